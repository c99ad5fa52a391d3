//! Case-insensitive, URN-aware access to JSON resources (RFC 7643 §2.1:
//! attribute names and schema URNs are case-insensitive).

use serde_json::{Map, Value};

use crate::filter::AttrPath;

/// The key in `obj` equal to `name` ignoring ASCII case (exact match first).
pub(crate) fn key_ci<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a String> {
    if let Some((k, _)) = obj.get_key_value(name) {
        return Some(k);
    }
    obj.keys().find(|k| k.eq_ignore_ascii_case(name))
}

/// `obj[name]` ignoring ASCII case.
pub(crate) fn get_ci<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let key = key_ci(obj, name)?;
    obj.get(key)
}

/// Removes `obj[name]` ignoring ASCII case.
pub(crate) fn remove_ci(obj: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let key = key_ci(obj, name)?.clone();
    obj.remove(&key)
}

/// Whether `urn` names a core schema, whose attributes live at the top level.
pub(crate) fn is_core_schema(urn: &str) -> bool {
    urn.eq_ignore_ascii_case(crate::schema::USER_SCHEMA)
        || urn.eq_ignore_ascii_case(crate::schema::GROUP_SCHEMA)
}

/// The object holding `path.name`: the resource itself for unqualified and
/// core-qualified paths, the extension object for extension URNs.
pub(crate) fn container<'a>(
    resource: &'a Value,
    path: &AttrPath,
) -> Option<&'a Map<String, Value>> {
    let obj = resource.as_object()?;
    match &path.schema {
        Some(urn) if !is_core_schema(urn) => get_ci(obj, urn)?.as_object(),
        _ => Some(obj),
    }
}

/// The value of the top-level attribute of `path` (ignores `sub_attr`).
pub(crate) fn top_value<'a>(resource: &'a Value, path: &AttrPath) -> Option<&'a Value> {
    get_ci(container(resource, path)?, &path.name)
}

/// Every leaf value `path` designates: array elements are flattened, and a
/// sub-attribute is taken from each element (RFC 7644 §3.4.2.2: a
/// multi-valued attribute matches if any of its values matches).
pub(crate) fn values_at<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let Some(top) = top_value(resource, path) else {
        return Vec::new();
    };
    let elements: Vec<&Value> = match top {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let Some(sub) = &path.sub_attr else {
        return elements;
    };
    let mut out = Vec::new();
    for element in elements {
        match element.as_object().and_then(|o| get_ci(o, sub)) {
            Some(Value::Array(items)) => out.extend(items.iter()),
            Some(v) => out.push(v),
            None => {}
        }
    }
    out
}

/// Parses a JSON document in which no object names a member twice, in the
/// same case or another: `{"userName": "a", "userName": "b"}` and
/// `{"userName": "a", "USERNAME": "b"}` are errors.
///
/// Attribute names and schema URNs are case-insensitive (RFC 7643 §2.1) and
/// RFC 8259 leaves a repeated name's meaning to the parser, so such a
/// document means nothing definite: serde_json alone keeps the last value
/// of an exact repeat, and stored as sent a case variant would be read by
/// some code paths and not others. A repeat is a data error
/// ([`serde_json::Error::is_data`]) naming both spellings.
pub fn from_slice_unique(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde::de::DeserializeSeed::deserialize(Unique, &mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Builds a `Value` as serde_json's own visitor does, refusing repeats.
#[derive(Clone, Copy)]
struct Unique;

impl<'de> serde::de::DeserializeSeed<'de> for Unique {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Unique {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        let mut folded = FoldedKeys::default();
        while let Some(key) = map.next_key::<String>()? {
            if let Some(first) = folded.repeat_of(&obj, &key) {
                return Err(serde::de::Error::custom(format!(
                    "\"{first}\" and \"{key}\" name one attribute twice \
                     (attribute names are case-insensitive)"
                )));
            }
            let value = map.next_value_seed(self)?;
            obj.insert(key, value);
        }
        Ok(Value::Object(obj))
    }
}

/// The keys of an object being read, compared ignoring ASCII case: a few
/// are scanned, many are kept folded in a set, so a hostile object with
/// thousands of members stays linear.
#[derive(Default)]
struct FoldedKeys(std::collections::HashMap<String, String>);

impl FoldedKeys {
    /// The earlier spelling of `key`, if `obj` already has it; records `key`.
    fn repeat_of(&mut self, obj: &Map<String, Value>, key: &str) -> Option<String> {
        const SCAN: usize = 16;
        if obj.len() < SCAN {
            return obj.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned();
        }
        if self.0.is_empty() {
            self.0 = obj
                .keys()
                .map(|k| (k.to_ascii_lowercase(), k.clone()))
                .collect();
        }
        match self.0.entry(key.to_ascii_lowercase()) {
            std::collections::hash_map::Entry::Occupied(first) => Some(first.get().clone()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(key.to_owned());
                None
            }
        }
    }
}

#[cfg(test)]
mod unique_tests {
    use super::*;
    use serde_json::json;

    fn repeat(text: &str) -> String {
        let err = from_slice_unique(text.as_bytes()).expect_err("a repeated name");
        assert!(err.is_data(), "{err}");
        err.to_string()
    }

    #[test]
    fn a_name_given_twice_in_any_case_at_any_depth_is_an_error() {
        let msg = repeat(r#"{"userName": "a", "USERNAME": "b"}"#);
        assert!(
            msg.contains("userName") && msg.contains("USERNAME"),
            "{msg}"
        );
        assert!(repeat(r#"{"userName": "a", "userName": "b"}"#).contains("userName"));
        repeat(r#"{"emails": [{"value": "x"}, {"value": "y", "Value": "z"}]}"#);
        repeat(r#"{"name": {"givenName": "a", "GIVENNAME": "b"}}"#);
        repeat(concat!(
            r#"{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {},"#,
            r#" "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER": {}}"#
        ));
    }

    #[test]
    fn many_members_are_checked_too() {
        let members: Vec<String> = (0..1000).map(|i| format!(r#""k{i}": {i}"#)).collect();
        let text = format!("{{{}}}", members.join(","));
        assert_eq!(
            from_slice_unique(text.as_bytes())
                .unwrap()
                .as_object()
                .unwrap()
                .len(),
            1000
        );
        let text = format!("{{{}, \"K999\": 0}}", members.join(","));
        assert!(repeat(&text).contains("K999"));
    }

    #[test]
    fn documents_read_as_serde_json_reads_them() {
        let text = r#"{"userName": "a", "n": [1, -2, 3.5, 18446744073709551615, null, true],
                       "name": {"givenName": "a", "familyName": "a"},
                       "emails": [{"value": "a", "type": "work"}, {"value": "a", "type": "home"}]}"#;
        let strict = from_slice_unique(text.as_bytes()).unwrap();
        assert_eq!(strict, serde_json::from_str::<Value>(text).unwrap());
        assert_eq!(strict["n"][3], json!(u64::MAX));
        let syntax = from_slice_unique(b"{\"a\": }").unwrap_err();
        assert!(syntax.is_syntax(), "{syntax}");
        assert!(from_slice_unique(b"{} {}").is_err(), "trailing data");
    }
}
