//! `WatchChangesFrame`: what the server sends for `WatchChanges`.
//!
//! A change is delivered to every stream watching its directory, so the
//! server encodes it once and shares the bytes between streams instead of
//! cloning and encoding the `Change` message per stream. On the wire an
//! embedded message is a length-delimited field like `bytes`, so a frame
//! whose `change` holds an encoded [`Change`](super::directory::Change) is
//! byte for byte the `WatchChangesResponse` a client decodes.

use prost::bytes::Bytes;

use crate::directory::{Change, Progress, Synced};

/// The server side of `roster.directory.v1.WatchChangesResponse`; the tags
/// are the proto's.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchChangesFrame {
    #[prost(string, tag = "1")]
    pub cursor: String,
    #[prost(int64, tag = "2")]
    pub revision: i64,
    #[prost(oneof = "watch_changes_frame::Payload", tags = "3, 4, 5")]
    pub payload: Option<watch_changes_frame::Payload>,
}

/// The `payload` oneof of [`WatchChangesFrame`].
pub mod watch_changes_frame {
    use super::*;

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Payload {
        /// An encoded `Change` message, from [`encode_change`].
        #[prost(bytes = "bytes", tag = "3")]
        Change(Bytes),
        #[prost(message, tag = "4")]
        Progress(Progress),
        #[prost(message, tag = "5")]
        Synced(Synced),
    }
}

/// Encodes `change` once for the frames of every stream it goes to.
pub fn encode_change(change: &Change) -> Bytes {
    Bytes::from(prost::Message::encode_to_vec(change))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::watch_changes_frame::Payload;
    use super::*;
    use crate::directory::watch_changes_response::Payload as ResponsePayload;
    use crate::directory::{User, WatchChangesResponse, change};

    fn sample_change() -> Change {
        Change {
            event_id: "e1".into(),
            kind: 1,
            directory_id: "d1".into(),
            resource_id: "u1".into(),
            version: 3,
            resource: Some(change::Resource::User(User {
                user_name: "ada".into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn decoded(frame: &WatchChangesFrame) -> WatchChangesResponse {
        WatchChangesResponse::decode(frame.encode_to_vec().as_slice()).unwrap()
    }

    #[test]
    fn a_change_frame_decodes_as_the_response_with_that_change() {
        let change = sample_change();
        let frame = WatchChangesFrame {
            cursor: "r7".into(),
            revision: 7,
            payload: Some(Payload::Change(encode_change(&change))),
        };
        let expected = WatchChangesResponse {
            cursor: "r7".into(),
            revision: 7,
            payload: Some(ResponsePayload::Change(change)),
        };
        assert_eq!(decoded(&frame), expected);
        assert_eq!(frame.encode_to_vec(), expected.encode_to_vec());
    }

    #[test]
    fn progress_and_synced_frames_decode_as_themselves() {
        for (payload, expected) in [
            (
                Payload::Progress(Progress {}),
                ResponsePayload::Progress(Progress {}),
            ),
            (
                Payload::Synced(Synced {}),
                ResponsePayload::Synced(Synced {}),
            ),
        ] {
            let frame = WatchChangesFrame {
                cursor: "r1".into(),
                revision: 1,
                payload: Some(payload),
            };
            assert_eq!(decoded(&frame).payload, Some(expected));
        }
    }
}
