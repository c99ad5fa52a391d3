//! Request-path normalization.
//!
//! IT admins paste base URLs with a trailing slash (`…/scim/v2/<id>/`), and
//! IdPs then call `…/<id>//Users` or `…/Users/`. Routing matches exact paths,
//! so the path is tidied before routing: runs of `/` collapse to one and a
//! trailing `/` is dropped. The query string is kept as sent.

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

/// `path` with runs of `/` collapsed and no trailing `/` (the root stays
/// `/`), or `None` when nothing changes.
pub fn normalized_path(path: &str) -> Option<String> {
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
    fn collapses_doubled_and_trailing_slashes() {
        assert_eq!(
            normalized_path("/scim/v2/d//Users").as_deref(),
            Some("/scim/v2/d/Users")
        );
        assert_eq!(
            normalized_path("/scim/v2/d/Users/").as_deref(),
            Some("/scim/v2/d/Users")
        );
        assert_eq!(
            normalized_path("/scim/v2/d/").as_deref(),
            Some("/scim/v2/d")
        );
        assert_eq!(normalized_path("//").as_deref(), Some("/"));
        assert_eq!(normalized_path("/scim/v2/d/Users"), None);
        assert_eq!(normalized_path("/"), None);
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
