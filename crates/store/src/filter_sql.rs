//! Translation of SCIM filters and sort keys into SQL.
