//! Request-path normalization.
//!
//! IT admins paste base URLs with a trailing slash (`…/scim/v2/<id>/`), and
//! IdPs then call `…/<id>//Users` or `…/Users/`. Routing matches exact paths,
//! so the path is tidied before routing: runs of `/` collapse to one and a
//! trailing `/` is dropped. The query string is kept as sent.
//!
//! SCIM 1.1 clients also repeat the version after the base URL
//! (`…/scim/v1/<id>/v1/Users`, the 1.1 API's versioned form) and may name
//! the format with a suffix (`/Users/<id>.json`); under `/scim/v1/` both
//! reach the plain route.

use axum::extract::Request;
use axum::http::Uri;
use axum::http::uri::PathAndQuery;

/// Rewrites the request's path when it has doubled or trailing slashes.
pub fn normalize_request(mut request: Request) -> Request {
    if let Some(uri) = normalized_uri(request.uri()) {
        *request.uri_mut() = uri;
    }
    request
}

/// The same URI with a normalized path, or `None` when it is already normal.
fn normalized_uri(uri: &Uri) -> Option<Uri> {
    let path = normalized_path(uri.path())?;
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

/// `path` tidied (slashes, then the 1.1 spellings), or `None` when nothing
/// changes.
pub fn normalized_path(path: &str) -> Option<String> {
    let tidy = tidy_slashes(path);
    let current = tidy.as_deref().unwrap_or(path);
    v1_spelling(current).or(tidy)
}

/// A 1.1 path without the repeated version segment and the `.json` format
/// suffix; `None` for other paths and plain 1.1 paths.
fn v1_spelling(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/scim/v1/")?;
    let mut segments: Vec<&str> = rest.split('/').collect();
    let mut changed = false;
    if segments
        .get(1)
        .is_some_and(|s| s.eq_ignore_ascii_case("v1"))
    {
        segments.remove(1);
        changed = true;
    }
    if segments.len() > 1
        && let Some(last) = segments.last_mut()
        && last.len() > ".json".len()
        && last
            .get(last.len() - ".json".len()..)
            .is_some_and(|suffix| suffix.eq_ignore_ascii_case(".json"))
    {
        *last = &last[..last.len() - ".json".len()];
        changed = true;
    }
    changed.then(|| format!("/scim/v1/{}", segments.join("/")))
}

/// `path` with runs of `/` collapsed and no trailing `/` (the root stays
/// `/`), or `None` when nothing changes.
fn tidy_slashes(path: &str) -> Option<String> {
    let doubled = path.contains("//");
    let trailing = path.len() > 1 && path.ends_with('/');
    if !doubled && !trailing {
        return None;
    }
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_slashes_and_maps_the_1_1_spellings_onto_the_plain_routes() {
        // (path, what it normalizes to; `None`: already normal)
        let cases = [
            // Doubled and trailing slashes.
            ("/scim/v2/d//Users", Some("/scim/v2/d/Users")),
            ("/scim/v2/d/Users/", Some("/scim/v2/d/Users")),
            ("/scim/v2/d/", Some("/scim/v2/d")),
            ("//", Some("/")),
            ("/scim/v2/d/Users", None),
            ("/", None),
            // SCIM 1.1's `/v1/` prefix and `.json` suffix, under /scim/v1 only.
            ("/scim/v1/d/v1/Users", Some("/scim/v1/d/Users")),
            ("/scim/v1/d//V1/Users/u1.json/", Some("/scim/v1/d/Users/u1")),
            ("/scim/v1/d/Users.JSON", Some("/scim/v1/d/Users")),
            ("/scim/v1/d/Users", None),
            ("/scim/v2/d/v1/Users", None),
            ("/scim/v2/d/Users/u1.json", None),
            // Not a directory's path.
            ("/scim/v1/x.json", None),
        ];
        for (path, expected) in cases {
            assert_eq!(normalized_path(path).as_deref(), expected, "{path}");
        }
    }

    #[test]
    fn keeps_the_query() {
        let uri: Uri = "/scim/v2/d//Users/?filter=userName%20eq%20%22a%22"
            .parse()
            .unwrap();
        let fixed = normalized_uri(&uri).unwrap();
        assert_eq!(fixed.path(), "/scim/v2/d/Users");
        assert_eq!(fixed.query(), Some("filter=userName%20eq%20%22a%22"));
    }
}
