//! The parts of the wire contract between the directory service and its
//! callers that the protos cannot express: metadata keys and shared request
//! bodies. Declared once here and imported on both sides.

/// gRPC metadata key carrying the RFC 7644 `scimType` of an error.
pub const SCIM_TYPE_METADATA: &str = "roster-scim-type";
/// gRPC metadata key carrying the HTTP status of the equivalent SCIM error.
pub const SCIM_STATUS_METADATA: &str = "roster-scim-status";

/// gRPC metadata key carrying, on `OUT_OF_RANGE`, the oldest cursor a watch
/// can still resume from.
pub const OLDEST_CURSOR_METADATA: &str = "roster-oldest-cursor";
/// gRPC metadata key carrying, in whole seconds, when a busy call may be
/// retried.
pub const RETRY_AFTER_METADATA: &str = "retry-after";
/// gRPC's own retry-pushback metadata key (milliseconds), honoured by
/// clients with a retry policy.
pub const RETRY_PUSHBACK_METADATA: &str = "grpc-retry-pushback-ms";
/// gRPC metadata key carrying the id of the SCIM request a call serves, so
/// the two services' log lines can be joined.
pub const REQUEST_ID_METADATA: &str = "x-request-id";

/// The SCIM PatchOp that deactivates a user: what a `DELETE /Users/{id}`
/// becomes under the deprovision policy `deactivate`.
pub const DEACTIVATE_PATCH: &str = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}"#;

/// gRPC metadata key carrying, on a write's reply, the change-log events the
/// write committed, in the text form of [`Events::encode`]; absent when it
/// committed none. The gateway records them with the SCIM request in the
/// audit trail, and the audit trail stores the same text.
pub const EVENTS_METADATA: &str = "roster-events";

/// The change-log events of one request, as runs of one kind at
/// consecutive revisions: compact (a PATCH adding 1,000 members is one run)
/// and bounded (at most [`Events::MAX_RUNS`] runs; the rest only counted),
/// so it always fits in a metadata value and an audit-trail row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Events {
    pub runs: Vec<crate::admin::ActivityEvents>,
    /// Events beyond the runs kept.
    pub omitted: i64,
}

impl Events {
    /// Runs kept at most.
    pub const MAX_RUNS: usize = 64;

    /// Adds `count` events of `kind` from `revision` on; call in revision
    /// order.
    pub fn push(&mut self, kind: &str, revision: i64, count: i64) {
        if let Some(last) = self.runs.last_mut()
            && last.kind == kind
            && last.revision + last.count == revision
        {
            last.count += count;
        } else if self.runs.len() < Self::MAX_RUNS {
            self.runs.push(crate::admin::ActivityEvents {
                kind: kind.to_owned(),
                revision,
                count,
            });
        } else {
            self.omitted += count;
        }
    }

    /// Adds the events of a later call of the same request.
    pub fn extend(&mut self, later: Events) {
        for run in later.runs {
            self.push(&run.kind, run.revision, run.count);
        }
        self.omitted += later.omitted;
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.omitted == 0
    }

    /// The newest revision listed (0 when none).
    pub fn newest(&self) -> i64 {
        self.runs
            .iter()
            .map(|r| r.revision + r.count - 1)
            .max()
            .unwrap_or(0)
    }

    /// `user.created:1042,member.added:1043-1044`, and `+N` when N more
    /// were omitted.
    pub fn encode(&self) -> String {
        let mut parts: Vec<String> = self
            .runs
            .iter()
            .map(|r| match r.count {
                1 => format!("{}:{}", r.kind, r.revision),
                n => format!("{}:{}-{}", r.kind, r.revision, r.revision + n - 1),
            })
            .collect();
        if self.omitted > 0 {
            parts.push(format!("+{}", self.omitted));
        }
        parts.join(",")
    }

    /// The events of [`Events::encode`]'s text, or `None` when the text is
    /// not one it writes (kinds are lower-case dotted words, revisions
    /// positive and ascending within a run).
    pub fn decode(text: &str) -> Option<Events> {
        let mut events = Events::default();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            if let Some(omitted) = part.strip_prefix('+') {
                events.omitted += omitted.parse::<i64>().ok().filter(|n| *n > 0)?;
                continue;
            }
            let (kind, revisions) = part.split_once(':')?;
            let word = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase());
            if !kind.split('.').all(word) {
                return None;
            }
            let (first, last) = match revisions.split_once('-') {
                Some((first, last)) => (first.parse().ok()?, last.parse().ok()?),
                None => {
                    let only: i64 = revisions.parse().ok()?;
                    (only, only)
                }
            };
            if first <= 0 || last < first {
                return None;
            }
            events.push(kind, first, last - first + 1);
        }
        Some(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_runs_that_survive_their_text() {
        let mut events = Events::default();
        events.push("user.created", 1042, 1);
        events.push("member.added", 1043, 1);
        events.push("member.added", 1044, 1);
        events.push("member.added", 1050, 1);
        assert_eq!(
            events.encode(),
            "user.created:1042,member.added:1043-1044,member.added:1050"
        );
        assert_eq!(events.newest(), 1050);
        assert_eq!(Events::decode(&events.encode()), Some(events));
        assert_eq!(Events::decode(""), Some(Events::default()));
        for bad in [
            "user.created",
            "User:1",
            "a:0",
            "a:3-2",
            "a:x",
            "+0",
            "a..b:1",
        ] {
            assert_eq!(Events::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn events_are_bounded() {
        let mut events = Events::default();
        for i in 0..100 {
            events.push(
                if i % 2 == 0 {
                    "user.created"
                } else {
                    "user.updated"
                },
                1 + i,
                1,
            );
        }
        assert_eq!(events.runs.len(), Events::MAX_RUNS);
        assert_eq!(events.omitted, 36);
        assert!(events.encode().ends_with(",+36"));
        assert_eq!(Events::decode(&events.encode()), Some(events));
    }
}

/// What a call past its `grpc-timeout` deadline answers: what tonic's server
/// answers, so a caller sees the same status whether the directory service
/// was reached over the wire or in its own process.
pub fn deadline_exceeded() -> tonic::Status {
    tonic::Status::cancelled("Timeout expired")
}
