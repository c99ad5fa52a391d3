//! The envelope of `BatchListUsers`: how a call's metadata and status
//! travel inside a batch, written once for both sides.

use std::collections::HashMap;

use tonic::metadata::{KeyAndValueRef, MetadataKey, MetadataMap, MetadataValue};

use crate::directory::CallStatus;

/// Calls one `BatchListUsers` may carry; the directory service refuses
/// more (`INVALID_ARGUMENT`), the gateway sends at most this many.
pub const MAX_CALLS: usize = 32;

/// The ASCII entries of `metadata`, except those named in `skip`.
pub fn to_map(metadata: &MetadataMap, skip: &[&str]) -> HashMap<String, String> {
    metadata
        .iter()
        .filter_map(|entry| match entry {
            KeyAndValueRef::Ascii(key, value) => Some((key.as_str(), value.to_str().ok()?)),
            KeyAndValueRef::Binary(..) => None,
        })
        .filter(|(key, _)| !skip.contains(key))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// `map` as gRPC metadata; entries that are not valid ASCII metadata are
/// dropped, as a server would have refused them as headers.
pub fn from_map(map: HashMap<String, String>) -> MetadataMap {
    let mut metadata = MetadataMap::with_capacity(map.len());
    for (key, value) in map {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            metadata.insert(key, value);
        }
    }
    metadata
}

/// What a failed call's trailers would have carried.
pub fn status_to_wire(status: &tonic::Status) -> CallStatus {
    CallStatus {
        code: status.code() as i32,
        message: status.message().to_owned(),
        metadata: to_map(status.metadata(), &[]),
    }
}

/// The status `wire` describes.
pub fn status_from_wire(wire: CallStatus) -> tonic::Status {
    tonic::Status::with_metadata(
        tonic::Code::from_i32(wire.code),
        wire.message,
        from_map(wire.metadata),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_survives_the_envelope() {
        let mut metadata = MetadataMap::new();
        metadata.insert("roster-scim-type", "invalidFilter".parse().unwrap());
        metadata.insert_bin(
            "trace-bin",
            tonic::metadata::MetadataValue::from_bytes(b"\x00"),
        );
        let status =
            tonic::Status::with_metadata(tonic::Code::InvalidArgument, "bad filter", metadata);
        let back = status_from_wire(status_to_wire(&status));
        assert_eq!(back.code(), tonic::Code::InvalidArgument);
        assert_eq!(back.message(), "bad filter");
        assert_eq!(
            back.metadata().get("roster-scim-type").unwrap(),
            "invalidFilter"
        );
        assert!(
            back.metadata().get_bin("trace-bin").is_none(),
            "binary entries stay out"
        );
    }

    #[test]
    fn skipped_and_invalid_entries_are_dropped() {
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", "Bearer s".parse().unwrap());
        metadata.insert("x-request-id", "r1".parse().unwrap());
        let map = to_map(&metadata, &["authorization"]);
        assert_eq!(map.len(), 1);
        assert_eq!(map["x-request-id"], "r1");

        let mut map = map;
        map.insert("Not A Key".into(), "v".into());
        map.insert("x-bad".into(), "line\nbreak".into());
        let back = from_map(map);
        assert_eq!(back.len(), 1);
        assert_eq!(back.get("x-request-id").unwrap(), "r1");
    }
}
