//! What a SCIM 1.1 request can be refused for before it is translated,
//! mapped once onto the crate's [`ScimError`] (status and detail).

use crate::error::ScimError;

/// A 1.1 request that has no 2.0 translation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V1Error {
    /// The body is not a JSON object.
    #[error("the request body must be a JSON object")]
    NotAnObject,
    /// `meta.attributes` is not a list of attribute names.
    #[error("'meta.attributes' must be a list of attribute names")]
    MetaAttributes,
    /// An attribute name or path that does not parse.
    #[error("'{0}' is not a valid attribute name")]
    AttributeName(String),
    /// `operation` with a value other than `delete`.
    #[error("'operation' of '{0}' must be \"delete\"")]
    Operation(String),
    /// `operation` outside a PATCH.
    #[error("'operation' is only allowed in a PATCH (attribute '{0}')")]
    OperationOutsidePatch(String),
    /// An element to delete that cannot be matched against stored values.
    #[error("a value of '{0}' to delete must be an object of simple sub-attributes")]
    UnmatchableDelete(String),
    /// A group member without an id.
    #[error("every member needs a 'value' naming a User or Group id")]
    MemberWithoutValue,
    /// An extension that is not an object of attributes.
    #[error("the enterprise extension must be an object of attributes")]
    ExtensionNotObject,
    /// The same extension in both dialects in one body.
    #[error("the enterprise extension is given both as 1.0 and 2.0")]
    DuplicateExtension,
    /// A filter with a construct SCIM 1.1 does not define.
    #[error("invalid filter: '{0}' is not a SCIM 1.1 filter construct")]
    FilterConstruct(&'static str),
    /// A filter, path or value the shared parser rejected.
    #[error(transparent)]
    Scim(#[from] ScimError),
}

impl From<V1Error> for ScimError {
    fn from(e: V1Error) -> ScimError {
        match e {
            V1Error::Scim(inner) => inner,
            V1Error::FilterConstruct(_) => ScimError::invalid_filter(e.to_string()),
            V1Error::AttributeName(_) => ScimError::invalid_path(e.to_string()),
            V1Error::NotAnObject | V1Error::MetaAttributes => {
                ScimError::invalid_syntax(e.to_string())
            }
            V1Error::Operation(_)
            | V1Error::OperationOutsidePatch(_)
            | V1Error::UnmatchableDelete(_)
            | V1Error::MemberWithoutValue
            | V1Error::ExtensionNotObject
            | V1Error::DuplicateExtension => ScimError::invalid_value(e.to_string()),
        }
    }
}
