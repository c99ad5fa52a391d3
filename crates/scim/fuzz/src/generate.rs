//! One PRNG and the word lists random inputs are built from, shared by the
//! stable fuzz driver, roster-scim's property tests and the e2e HTTP fuzzer
//! (`tests/e2e/hostile_fuzz.rs`). The two tests include this file by path
//! (`#[path]`), so that no crate needs a fuzzing feature for it.

/// xorshift64*: tiny and deterministic, so a failing run replays from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Filter tokens (operators, attribute names, literals, broken escapes and
/// URNs) that random text is built from, to reach deep parser states.
pub const FILTER_TOKENS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    ".",
    " ",
    "  ",
    "not",
    "not (",
    "and",
    "or",
    "pr",
    "eq",
    "ne",
    "co",
    "sw",
    "ew",
    "gt",
    "ge",
    "lt",
    "le",
    "EQ",
    "And",
    "userName",
    "emails",
    "type",
    "value",
    "primary",
    "meta.lastModified",
    "name.familyName",
    "members",
    "$ref",
    "x-count",
    "\"work\"",
    "\"\"",
    "\"\\u00e9\\n\"",
    "\"\\\"\"",
    "\"\\",
    "\"",
    "\\",
    "1",
    "-0",
    "2.5e3",
    "1e999",
    "01",
    "true",
    "false",
    "null",
    ":",
    "urn:",
    "urn:ietf:params:scim:schemas:core:2.0:User:",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:",
    "urn:scim:schemas:core:1.0",
    "urn:scim:schemas:core:1.0.",
    "urn:scim:schemas:extension:enterprise:1.0",
    "urn:scim:schemas:extension:enterprise:1.0.",
    "urn:scim:schemas:extension:enterprise:1.0:",
    "manager.managerId",
    "é",
    "€",
    "\u{0}",
    "\t",
    "#",
    "\"x\"",
    "\"\\u00e9\"",
    "-2.5e3",
    "urn:a:b:c",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
];

/// Object keys for generated JSON: SCIM attribute names and paths, the
/// enterprise URN, and the members/value keys PATCH values use.
pub const JSON_KEYS: &[&str] = &[
    "value",
    "type",
    "display",
    "primary",
    "active",
    "title",
    "name.familyName",
    "id",
    "members",
    "userName",
    "displayName",
    "schemas",
    "meta",
    "emails",
    "emails[type eq \"work\"].value",
    "$ref",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
];

/// PATCH paths: value filters, sub-attributes, extension URNs, read-only
/// and unknown attributes, and broken ones.
pub const PATCH_PATHS: &[&str] = &[
    "title",
    "active",
    "name",
    "name.givenName",
    "emails",
    "emails[type eq \"work\"]",
    "emails[type eq \"work\"].value",
    "emails[value co \"x\" or primary eq true].type",
    "members",
    "members[value eq \"u1\"]",
    "members[value eq \"u1\" or value eq \"u2\"]",
    "members[display eq \"x\"]",
    "id",
    "meta",
    "meta.version",
    "userName",
    "displayName",
    "groups",
    "",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
    "urn:x:y:attr",
    "x-count",
    "members[value eq \"g\"]",
    "emails[",
    "x[y eq 1].z",
];
