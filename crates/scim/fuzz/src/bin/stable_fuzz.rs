//! A stable-toolchain fuzz driver for machines without nightly: runs the
//! same harnesses as the `cargo fuzz` targets over inputs generated from a
//! grammar and mutated from the seed corpus, for N iterations or T seconds.
//!
//! Usage: `stable_fuzz <filter_parse|patch_apply|v1_codec|json_unique> [iterations] [seed] [seconds]`
//! On a panic the input is written to `crashes/` and the process exits 1.

use std::panic;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use roster_scim_fuzz::generate::{FILTER_TOKENS, JSON_KEYS, PATCH_PATHS, Rng};

const SEEDS: &[&str] = &[
    r#"userName eq "bjensen""#,
    r#"name.familyName co "O'Malley""#,
    r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
    r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
    r#"title pr and userType eq "Employee""#,
    r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
    r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
    r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1""#,
    r#"emails[type eq "work"].value"#,
    r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#,
];

fn token_soup(rng: &mut Rng) -> String {
    let n = rng.below(60);
    (0..n).map(|_| *rng.pick(FILTER_TOKENS)).collect()
}

fn mutate(rng: &mut Rng, input: &str) -> String {
    let mut bytes = input.as_bytes().to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(5) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next_u64() as u8;
            }
            1 if at < bytes.len() => {
                let end = (at + rng.below(8)).min(bytes.len());
                bytes.drain(at..end);
            }
            2 => {
                let t = rng.pick(FILTER_TOKENS).as_bytes().to_vec();
                bytes.splice(at..at, t);
            }
            3 if !bytes.is_empty() => {
                let start = rng.below(bytes.len());
                let end = (start + rng.below(16)).min(bytes.len());
                let chunk = bytes[start..end].to_vec();
                bytes.splice(at..at, chunk);
            }
            _ => {
                let seed = rng.pick(SEEDS).as_bytes().to_vec();
                bytes.splice(at..at, seed);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn deep_nesting(rng: &mut Rng) -> String {
    let depth = rng.below(200);
    let open = *rng.pick(&["(", "not (", "emails["]);
    let close = if open == "emails[" { "]" } else { ")" };
    format!(
        "{}a pr{}",
        open.repeat(depth),
        close.repeat(rng.below(depth + 2))
    )
}

fn filter_input(rng: &mut Rng) -> Vec<u8> {
    let text = match rng.below(4) {
        0 => token_soup(rng),
        1 => deep_nesting(rng),
        _ => {
            let seed = rng.pick(SEEDS).to_string();
            mutate(rng, &seed)
        }
    };
    text.into_bytes()
}

fn json_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 2 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.below(1000) as i64 - 500),
        3 => json!(*rng.pick(&[
            "True",
            "False",
            "x",
            "",
            "{\"title\":\"t\"}",
            "[{\"value\":\"u9\"}]"
        ])),
        4 => json!(token_soup(rng)),
        5 => json!(*rng.pick(&["u1", "u2", "bjensen", "a@b.c"])),
        6 | 7 => {
            let mut o = serde_json::Map::new();
            for _ in 0..rng.below(4) {
                o.insert(
                    (*rng.pick(JSON_KEYS)).to_owned(),
                    json_value(rng, depth + 1),
                );
            }
            Value::Object(o)
        }
        _ => Value::Array(
            (0..rng.below(4))
                .map(|_| json_value(rng, depth + 1))
                .collect(),
        ),
    }
}

fn patch_path(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => token_soup(rng),
        1 => {
            let p = rng.pick(PATCH_PATHS).to_string();
            mutate(rng, &p)
        }
        _ => rng.pick(PATCH_PATHS).to_string(),
    }
}

fn patch_input(rng: &mut Rng) -> Vec<u8> {
    // Non-JSON input is used by the harness as a bare path (as libFuzzer's
    // short inputs are); this is how `id:n` was found.
    if rng.below(5) == 0 {
        return patch_path(rng).into_bytes();
    }
    let ops: Vec<Value> = (0..=rng.below(4))
        .map(|_| {
            let mut o = serde_json::Map::new();
            let op = *rng.pick(&[
                "add", "Add", "replace", "Replace", "remove", "REMOVE", "merge",
            ]);
            o.insert("op".into(), json!(op));
            if rng.below(5) > 0 {
                o.insert("path".into(), json!(patch_path(rng)));
            }
            if rng.below(4) > 0 {
                o.insert("value".into(), json_value(rng, 0));
            }
            Value::Object(o)
        })
        .collect();
    let mut body = json!({"Operations": ops});
    if rng.below(3) == 0 {
        body["schemas"] = json!(["urn:ietf:params:scim:api:messages:2.0:PatchOp"]);
    }
    let text = body.to_string();
    if rng.below(10) == 0 {
        mutate(rng, &text).into_bytes()
    } else {
        text.into_bytes()
    }
}

/// The SCIM 1.1 forms the generic generators do not produce: partial
/// resources with `meta.attributes` and `"operation"` marks, 1.1 URNs.
fn v1_value(rng: &mut Rng, depth: usize) -> Value {
    const KEYS: &[&str] = &[
        "schemas",
        "meta",
        "attributes",
        "operation",
        "userName",
        "displayName",
        "title",
        "name",
        "emails",
        "addresses",
        "members",
        "groups",
        "entitlements",
        "x509Certificates",
        "value",
        "type",
        "primary",
        "managerId",
        "manager",
        "urn:scim:schemas:core:1.0",
        "urn:scim:schemas:extension:enterprise:1.0",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        "urn:x:y:1.0",
    ];
    match rng.below(if depth > 3 { 4 } else { 7 }) {
        0 => json!(*rng.pick(&["delete", "Delete", "merge", "", "u1"])),
        1 => json!(*rng.pick(KEYS)),
        2 => json_value(rng, 3),
        3 => Value::Array((0..rng.below(3)).map(|_| json!(patch_path(rng))).collect()),
        4 => Value::Array(
            (0..rng.below(4))
                .map(|_| v1_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut o = serde_json::Map::new();
            for _ in 0..rng.below(5) {
                o.insert((*rng.pick(KEYS)).to_owned(), v1_value(rng, depth + 1));
            }
            Value::Object(o)
        }
    }
}

fn v1_input(rng: &mut Rng) -> Vec<u8> {
    match rng.below(3) {
        // Text: a filter or attribute list, 1.1 URNs included.
        0 => filter_input(rng),
        1 => {
            let body = v1_value(rng, 0).to_string();
            mutate(rng, &body).into_bytes()
        }
        _ => v1_value(rng, 0).to_string().into_bytes(),
    }
}

/// JSON text whose objects often repeat a name, in the same case or
/// another (built as text: a `Value` cannot hold a repeat), sometimes mutated.
fn json_input(rng: &mut Rng) -> Vec<u8> {
    let text = json_text(rng, 0);
    if rng.below(3) == 0 {
        mutate(rng, &text).into_bytes()
    } else {
        text.into_bytes()
    }
}

fn json_text(rng: &mut Rng, depth: usize) -> String {
    const NAMES: &[&str] = &[
        "userName", "USERNAME", "username", "value", "Value", "a", "é", "",
    ];
    match if depth > 3 {
        rng.below(3)
    } else {
        rng.below(5)
    } {
        0 => rng
            .pick(&["null", "true", "-0", "1e308", "18446744073709551616", "0.5"])
            .to_string(),
        1 => format!("{:?}", rng.pick(NAMES)),
        2 => rng.next_u64().to_string(),
        3 => {
            let items: Vec<String> = (0..rng.below(4))
                .map(|_| json_text(rng, depth + 1))
                .collect();
            format!("[{}]", items.join(","))
        }
        _ => {
            let members: Vec<String> = (0..rng.below(6))
                .map(|_| format!("{:?}:{}", rng.pick(NAMES), json_text(rng, depth + 1)))
                .collect();
            format!("{{{}}}", members.join(","))
        }
    }
}

type Generator = fn(&mut Rng) -> Vec<u8>;
type Harness = fn(&[u8]);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target = args.get(1).map(String::as_str).unwrap_or("filter_parse");
    let iterations: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let budget = args
        .get(4)
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    let (generate, harness): (Generator, Harness) = match target {
        "filter_parse" => (filter_input, roster_scim_fuzz::filter_parse),
        "patch_apply" => (patch_input, roster_scim_fuzz::patch_apply),
        "v1_codec" => (v1_input, roster_scim_fuzz::v1_codec),
        "json_unique" => (json_input, roster_scim_fuzz::json_unique),
        other => {
            eprintln!(
                "unknown target {other}; use filter_parse, patch_apply, v1_codec or json_unique"
            );
            std::process::exit(2);
        }
    };
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let mut ran = 0u64;
    while ran < iterations && budget.is_none_or(|b| started.elapsed() < b) {
        let input = generate(&mut rng);
        if panic::catch_unwind(|| harness(&input)).is_err() {
            let _ = std::fs::create_dir_all("crashes");
            let file = format!("crashes/{target}-{seed}-{ran}");
            let _ = std::fs::write(&file, &input);
            eprintln!(
                "CRASH after {ran} inputs; input saved to {file}: {:?}",
                String::from_utf8_lossy(&input)
            );
            std::process::exit(1);
        }
        ran += 1;
    }
    println!(
        "{target}: {ran} inputs in {:.1?}, no crash",
        started.elapsed()
    );
}
