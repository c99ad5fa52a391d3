//! `ListResponse` (RFC 7644 §3.4.2).

use serde_json::{Value, json};

use crate::resource::LIST_RESPONSE_SCHEMA;

/// Builds a ListResponse; `itemsPerPage` is the number of resources given.
///
/// ```
/// use roster_scim::list::list_response;
/// use serde_json::json;
/// let page = list_response(vec![json!({"id": "1"})], 10, 1);
/// assert_eq!(page["totalResults"], 10);
/// assert_eq!(page["itemsPerPage"], 1);
/// assert_eq!(page["Resources"][0]["id"], "1");
/// ```
pub fn list_response(resources: Vec<Value>, total_results: i64, start_index: i64) -> Value {
    json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": total_results,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_list_has_all_members() {
        let page = list_response(Vec::new(), 0, 1);
        assert_eq!(page["schemas"][0], LIST_RESPONSE_SCHEMA);
        assert_eq!(page["itemsPerPage"], 0);
        assert_eq!(page["startIndex"], 1);
        assert_eq!(page["Resources"], json!([]));
    }
}
