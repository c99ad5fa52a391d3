//! What a recorded SCIM request's outcome means, in plain language, and
//! what to change on the identity provider's side. The reasons of a 401 are
//! the gateway's own (`crate::auth::AuthFailure`), recorded as the entry's
//! detail.

/// An outcome explained: what happened, and what to do about it (empty
/// when nothing needs doing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Explanation {
    pub what: &'static str,
    pub fix: &'static str,
}

const fn says(what: &'static str, fix: &'static str) -> Explanation {
    Explanation { what, fix }
}

/// The explanation of an answer with `status`, `scim_type` and `detail`.
pub fn explain(status: i32, scim_type: &str, detail: &str) -> Explanation {
    match status {
        200..=299 => says("Accepted.", ""),
        401 => unauthorized(detail),
        400 => bad_request(scim_type),
        403 => says(
            "Roster refused the operation for this connection.",
            "Check which operations the IdP is configured to send; contact the application's vendor if it should be allowed.",
        ),
        404 => says(
            "The user or group the IdP named does not exist in this directory (deleted here, or never created), or the URL is wrong.",
            "Check that the SCIM base URL in the IdP is exactly the one on the Set up page. For a single user, re-provision it from the IdP (Okta: Push Now; Entra: Provision on demand) so it is created again.",
        ),
        405 | 501 => says(
            "The IdP called an endpoint Roster does not offer (for example /Me, or a method the endpoint does not take).",
            "Nothing breaks provisioning; if the IdP's test needs it, choose the generic SCIM 2.0 settings that use /Users and /Groups only.",
        ),
        409 => conflict(scim_type),
        412 => says(
            "The IdP changed a user or group based on an older copy (its If-Match version is stale).",
            "Nothing to do: the IdP reads the current version and retries.",
        ),
        413 => says(
            "The request was larger than Roster accepts.",
            "Lower the IdP's batch size (Bulk operations, or group pushes with thousands of members at once).",
        ),
        415 => says(
            "The request was not JSON.",
            "Set the IdP's content type to application/scim+json or application/json.",
        ),
        429 => says(
            "Too many requests at once: Roster asked the IdP to slow down.",
            "Nothing to do: the IdP retries after the delay Roster gave (Retry-After).",
        ),
        500..=599 => says(
            "Roster could not answer at that moment.",
            "The IdP retries on its own. If it keeps failing, contact the application's vendor with the time and request id shown here.",
        ),
        _ => says("An unusual answer.", ""),
    }
}

fn unauthorized(reason: &str) -> Explanation {
    match reason {
        "missing_header" => says(
            "The IdP sent no token.",
            "Paste a token from the Tokens page into the IdP's token field (Okta: Authorization; Entra: Secret Token), then save.",
        ),
        "malformed_header" => says(
            "The IdP's Authorization header is not a single bearer token.",
            "Paste the token alone, without spaces or line breaks, and choose HTTP header / bearer token authentication.",
        ),
        "doubled_bearer" => says(
            "The token field contains the word Bearer, so the IdP sent it twice.",
            "Remove \"Bearer\" from the token field: paste only the rst_… token; the IdP adds the word itself.",
        ),
        "unknown_or_revoked_token" => says(
            "The token is not one Roster knows: mistyped, or revoked.",
            "Create a new token on the Tokens page and paste it into the IdP.",
        ),
        "token_of_another_directory" | "token_not_for_this_directory" => says(
            "The token belongs to another connection than the URL's.",
            "Use the SCIM base URL and a token from this portal together.",
        ),
        _ => says(
            "The IdP's credentials were refused.",
            "Create a new token on the Tokens page and paste it into the IdP.",
        ),
    }
}

fn bad_request(scim_type: &str) -> Explanation {
    match scim_type {
        "invalidFilter" => says(
            "The IdP searched with a filter Roster cannot read.",
            "Check the IdP's matching attribute: it should be userName for users and displayName for groups.",
        ),
        "invalidSyntax" => says(
            "The IdP sent a body that is not valid SCIM.",
            "Check custom attribute mappings in the IdP that produce empty or malformed values; the detail says which part.",
        ),
        "invalidPath" | "noTarget" => says(
            "The IdP tried to change an attribute that does not exist or cannot be addressed.",
            "Remove or correct the IdP attribute mapping named in the detail.",
        ),
        "mutability" => says(
            "The IdP tried to change a read-only attribute (such as id or meta).",
            "Remove that attribute from the IdP's mappings.",
        ),
        "tooMany" => says(
            "The IdP asked for more results than Roster returns at once.",
            "Nothing to do for IdPs that page; otherwise lower the page size in the IdP.",
        ),
        "invalidVers" => says(
            "The IdP sent an If-Match version Roster does not recognise.",
            "Nothing to do: the IdP reads the resource again.",
        ),
        _ => says(
            "The IdP sent a value Roster cannot accept (for example a missing userName, or a member that does not exist).",
            "Fix the attribute the detail names in the IdP's mappings; for group members, provision the user before the group.",
        ),
    }
}

fn conflict(scim_type: &str) -> Explanation {
    if scim_type == "uniqueness" {
        return says(
            "A user with that userName (or a group with that name) already exists in this directory.",
            "In the IdP, let it match existing users instead of creating them again (Okta: import and confirm matches; Entra: keep userName as the matching attribute), or give the two people different usernames.",
        );
    }
    says(
        "The request conflicts with the directory's current state (for example a third token, or an edit racing another).",
        "Retry; for tokens, revoke the one the IdP no longer uses first.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_recorded_401_reason_is_explained_with_a_fix() {
        for reason in [
            "missing_header",
            "malformed_header",
            "doubled_bearer",
            "unknown_or_revoked_token",
            "token_of_another_directory",
            "unknown_directory",
            "token_not_for_this_directory",
        ] {
            let e = explain(401, "", reason);
            assert!(!e.what.is_empty() && !e.fix.is_empty(), "{reason}");
        }
        assert!(explain(401, "", "doubled_bearer").fix.contains("Bearer"));
    }

    #[test]
    fn scim_types_and_statuses_have_explanations() {
        assert!(
            explain(409, "uniqueness", "")
                .what
                .contains("already exists")
        );
        assert!(explain(400, "invalidFilter", "").fix.contains("userName"));
        assert_eq!(explain(201, "", "").fix, "");
        assert!(!explain(503, "", "").fix.is_empty());
    }
}
