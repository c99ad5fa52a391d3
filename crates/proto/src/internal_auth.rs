//! How the directory service says "your *internal* credential is wrong",
//! as opposed to "the IdP's bearer token is wrong".
//!
//! Both are `UNAUTHENTICATED`, so the rejection of the internal credential
//! also carries [`METADATA_KEY`]: a gateway that sees it knows it is
//! misconfigured (an outage for every IdP, answered 503) rather than facing a
//! bad IdP token (401, which makes IdPs quarantine the integration).

use tonic::metadata::MetadataValue;

/// gRPC metadata key set on every rejection of the internal credential.
pub const METADATA_KEY: &str = "roster-internal-auth";
/// Value of [`METADATA_KEY`] on such a rejection.
pub const REJECTED: &str = "rejected";

/// The `UNAUTHENTICATED` status for a call whose internal credential is
/// missing or wrong.
pub fn rejected(message: impl Into<String>) -> tonic::Status {
    let mut status = tonic::Status::unauthenticated(message);
    status
        .metadata_mut()
        .insert(METADATA_KEY, MetadataValue::from_static(REJECTED));
    status
}

/// Whether `status` is the directory service rejecting the caller's internal
/// credential (not a token check's answer).
pub fn is_rejection(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unauthenticated
        && status
            .metadata()
            .get(METADATA_KEY)
            .is_some_and(|v| v.as_bytes() == REJECTED.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_marked_unauthenticated_answers_are_internal_rejections() {
        assert!(is_rejection(&rejected("wrong internal credential")));
        assert!(!is_rejection(&tonic::Status::unauthenticated("bad token")));
        let mut other = tonic::Status::permission_denied("x");
        other
            .metadata_mut()
            .insert(METADATA_KEY, MetadataValue::from_static(REJECTED));
        assert!(!is_rejection(&other));
    }
}
