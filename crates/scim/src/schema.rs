//! Static schema definitions (RFC 7643 §4, §8.7.1): the single source of
//! truth for validation, projection, case-exactness and the discovery
//! documents.

/// Core User schema URN.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Core Group schema URN.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// Enterprise User extension URN.
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// SCIM attribute data types (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    /// A JSON string.
    String,
    /// A JSON boolean.
    Boolean,
    /// A JSON number with a fraction.
    Decimal,
    /// A JSON integer.
    Integer,
    /// An xsd:dateTime string, compared chronologically.
    DateTime,
    /// Base64 binary data.
    Binary,
    /// A URI reference.
    Reference,
    /// An object of sub-attributes.
    Complex,
}

impl AttrType {
    /// The RFC keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Binary => "binary",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

/// Attribute mutability (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    /// Cannot be modified by clients.
    ReadOnly,
    /// May be updated and read.
    ReadWrite,
    /// Set once, then never changed.
    Immutable,
    /// May be written, never returned.
    WriteOnly,
}

impl Mutability {
    /// The RFC keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

/// When an attribute is returned (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// Always returned, regardless of `attributes`/`excludedAttributes`.
    Always,
    /// Never returned.
    Never,
    /// Returned unless excluded.
    Default,
    /// Returned only when requested.
    Request,
}

impl Returned {
    /// The RFC keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
}

/// Uniqueness (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    /// No uniqueness.
    None,
    /// Unique within the service provider.
    Server,
    /// Globally unique.
    Global,
}

impl Uniqueness {
    /// The RFC keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
}

/// One attribute definition.
#[derive(Debug, Clone, Copy)]
pub struct AttributeDef {
    /// Attribute name as the RFC spells it.
    pub name: &'static str,
    /// Data type.
    pub ty: AttrType,
    /// Whether the value is a JSON array.
    pub multi_valued: bool,
    /// Human-readable description.
    pub description: &'static str,
    /// Whether the attribute is required.
    pub required: bool,
    /// Whether string comparisons are case-sensitive.
    pub case_exact: bool,
    /// Mutability.
    pub mutability: Mutability,
    /// Returned rule.
    pub returned: Returned,
    /// Uniqueness.
    pub uniqueness: Uniqueness,
    /// Suggested canonical values (e.g. `work`, `home`).
    pub canonical_values: &'static [&'static str],
    /// For references: the referenced resource types.
    pub reference_types: &'static [&'static str],
    /// Sub-attributes of a complex attribute.
    pub sub_attributes: &'static [AttributeDef],
}

impl AttributeDef {
    /// Finds a sub-attribute by case-insensitive name.
    pub fn sub(&self, name: &str) -> Option<&'static AttributeDef> {
        find(self.sub_attributes, name)
    }
}

/// A schema: URN, name and attributes.
#[derive(Debug, Clone, Copy)]
pub struct SchemaDef {
    /// Schema URN.
    pub id: &'static str,
    /// Short name.
    pub name: &'static str,
    /// Description.
    pub description: &'static str,
    /// Attributes.
    pub attributes: &'static [AttributeDef],
}

/// Finds an attribute in `defs` by case-insensitive name.
pub fn find(defs: &'static [AttributeDef], name: &str) -> Option<&'static AttributeDef> {
    defs.iter().find(|d| d.name.eq_ignore_ascii_case(name))
}

const fn string(name: &'static str, description: &'static str) -> AttributeDef {
    AttributeDef {
        name,
        ty: AttrType::String,
        multi_valued: false,
        description,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        uniqueness: Uniqueness::None,
        canonical_values: &[],
        reference_types: &[],
        sub_attributes: &[],
    }
}

const fn typed(name: &'static str, ty: AttrType, description: &'static str) -> AttributeDef {
    let mut d = string(name, description);
    d.ty = ty;
    d
}

const fn case_exact(mut d: AttributeDef) -> AttributeDef {
    d.case_exact = true;
    d
}

const fn read_only(mut d: AttributeDef) -> AttributeDef {
    d.mutability = Mutability::ReadOnly;
    d
}

const fn immutable(mut d: AttributeDef) -> AttributeDef {
    d.mutability = Mutability::Immutable;
    d
}

const fn with_canonical(mut d: AttributeDef, values: &'static [&'static str]) -> AttributeDef {
    d.canonical_values = values;
    d
}

const fn reference(
    name: &'static str,
    types: &'static [&'static str],
    description: &'static str,
) -> AttributeDef {
    let mut d = typed(name, AttrType::Reference, description);
    d.reference_types = types;
    d
}

const fn complex(
    name: &'static str,
    subs: &'static [AttributeDef],
    description: &'static str,
) -> AttributeDef {
    let mut d = typed(name, AttrType::Complex, description);
    d.sub_attributes = subs;
    d
}

const fn multi(mut d: AttributeDef) -> AttributeDef {
    d.multi_valued = true;
    d
}

/// The standard `value/display/type/primary` sub-attributes of a
/// multi-valued attribute, with the given canonical `type` values.
macro_rules! multi_value_subs {
    ($value:expr, $types:expr) => {
        &[
            $value,
            string(
                "display",
                "A human-readable name, primarily used for display purposes.",
            ),
            with_canonical(
                string("type", "A label indicating the attribute's function."),
                $types,
            ),
            typed(
                "primary",
                AttrType::Boolean,
                "A Boolean value indicating the 'primary' or preferred attribute value.",
            ),
        ]
    };
}

/// Attributes common to every resource (RFC 7643 §3.1). They are not part
/// of any schema document but govern mutability and returned rules.
pub static COMMON_ATTRIBUTES: &[AttributeDef] = &[
    {
        let mut d = case_exact(read_only(string(
            "id",
            "Unique identifier for the SCIM resource as defined by the service provider.",
        )));
        d.returned = Returned::Always;
        d.uniqueness = Uniqueness::Server;
        d
    },
    case_exact(string(
        "externalId",
        "An identifier for the resource as defined by the provisioning client.",
    )),
    read_only(complex(
        "meta",
        &[
            case_exact(read_only(string(
                "resourceType",
                "The name of the resource type of the resource.",
            ))),
            read_only(typed(
                "created",
                AttrType::DateTime,
                "The DateTime that the resource was added to the service provider.",
            )),
            read_only(typed(
                "lastModified",
                AttrType::DateTime,
                "The most recent DateTime that the details of this resource were updated.",
            )),
            case_exact(read_only(reference(
                "location",
                &["uri"],
                "The URI of the resource being returned.",
            ))),
            case_exact(read_only(string(
                "version",
                "The version of the resource being returned.",
            ))),
        ],
        "Resource metadata.",
    )),
];

/// `schemas` is returned always and not modifiable through PATCH paths.
pub const SCHEMAS_ATTRIBUTE: &str = "schemas";

static NAME_SUBS: &[AttributeDef] = &[
    string(
        "formatted",
        "The full name, including all middle names, titles, and suffixes as appropriate, formatted for display.",
    ),
    string(
        "familyName",
        "The family name of the User, or last name in most Western languages.",
    ),
    string(
        "givenName",
        "The given name of the User, or first name in most Western languages.",
    ),
    string("middleName", "The middle name(s) of the User."),
    string(
        "honorificPrefix",
        "The honorific prefix(es) of the User, or title in most Western languages.",
    ),
    string(
        "honorificSuffix",
        "The honorific suffix(es) of the User, or suffix in most Western languages.",
    ),
];

/// Core User attributes (RFC 7643 §4.1, §8.7.1).
pub static USER_ATTRIBUTES: &[AttributeDef] = &[
    {
        let mut d = string(
            "userName",
            "Unique identifier for the User, typically used by the user to directly authenticate to the service provider.",
        );
        d.required = true;
        d.uniqueness = Uniqueness::Server;
        d
    },
    complex("name", NAME_SUBS, "The components of the user's real name."),
    string(
        "displayName",
        "The name of the User, suitable for display to end-users.",
    ),
    string(
        "nickName",
        "The casual way to address the user in real life.",
    ),
    reference(
        "profileUrl",
        &["external"],
        "A fully qualified URL pointing to a page representing the User's online profile.",
    ),
    string("title", "The user's title, such as \"Vice President\"."),
    string(
        "userType",
        "Used to identify the relationship between the organization and the user.",
    ),
    string(
        "preferredLanguage",
        "Indicates the User's preferred written or spoken language.",
    ),
    string(
        "locale",
        "Used to indicate the User's default location for purposes of localizing items such as currency, date time format, or numerical representations.",
    ),
    string(
        "timezone",
        "The User's time zone in the 'Olson' time zone database format, e.g., 'America/Los_Angeles'.",
    ),
    typed(
        "active",
        AttrType::Boolean,
        "A Boolean value indicating the User's administrative status.",
    ),
    {
        let mut d = string("password", "The User's cleartext password.");
        d.mutability = Mutability::WriteOnly;
        d.returned = Returned::Never;
        d
    },
    multi(complex(
        "emails",
        multi_value_subs!(
            string("value", "Email addresses for the user."),
            &["work", "home", "other"]
        ),
        "Email addresses for the user.",
    )),
    multi(complex(
        "phoneNumbers",
        multi_value_subs!(
            string("value", "Phone number of the User."),
            &["work", "home", "mobile", "fax", "pager", "other"]
        ),
        "Phone numbers for the User.",
    )),
    multi(complex(
        "ims",
        multi_value_subs!(
            string("value", "Instant messaging address for the User."),
            &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]
        ),
        "Instant messaging addresses for the User.",
    )),
    multi(complex(
        "photos",
        multi_value_subs!(
            reference("value", &["external"], "URL of a photo of the User."),
            &["photo", "thumbnail"]
        ),
        "URLs of photos of the User.",
    )),
    multi(complex(
        "addresses",
        &[
            string(
                "formatted",
                "The full mailing address, formatted for display or use with a mailing label.",
            ),
            string("streetAddress", "The full street address component."),
            string("locality", "The city or locality component."),
            string("region", "The state or region component."),
            string("postalCode", "The zip code or postal code component."),
            string("country", "The country name component."),
            with_canonical(
                string("type", "A label indicating the attribute's function."),
                &["work", "home", "other"],
            ),
            typed(
                "primary",
                AttrType::Boolean,
                "A Boolean value indicating the 'primary' or preferred attribute value.",
            ),
        ],
        "A physical mailing address for this User.",
    )),
    read_only(multi(complex(
        "groups",
        &[
            read_only(string("value", "The identifier of the User's group.")),
            read_only(reference(
                "$ref",
                &["User", "Group"],
                "The URI of the corresponding 'Group' resource to which the user belongs.",
            )),
            read_only(string(
                "display",
                "A human-readable name, primarily used for display purposes.",
            )),
            read_only(with_canonical(
                string("type", "A label indicating the attribute's function."),
                &["direct", "indirect"],
            )),
        ],
        "A list of groups to which the user belongs.",
    ))),
    multi(complex(
        "entitlements",
        multi_value_subs!(string("value", "The value of an entitlement."), &[]),
        "A list of entitlements for the User.",
    )),
    multi(complex(
        "roles",
        multi_value_subs!(string("value", "The value of a role."), &[]),
        "A list of roles for the User.",
    )),
    multi(complex(
        "x509Certificates",
        multi_value_subs!(
            typed(
                "value",
                AttrType::Binary,
                "The value of an X.509 certificate."
            ),
            &[]
        ),
        "A list of certificates issued to the User.",
    )),
];

/// Enterprise User extension attributes (RFC 7643 §4.3).
pub static ENTERPRISE_USER_ATTRIBUTES: &[AttributeDef] = &[
    string(
        "employeeNumber",
        "Numeric or alphanumeric identifier assigned to a person.",
    ),
    string("costCenter", "Identifies the name of a cost center."),
    string("organization", "Identifies the name of an organization."),
    string("division", "Identifies the name of a division."),
    string("department", "Identifies the name of a department."),
    complex(
        "manager",
        &[
            string(
                "value",
                "The id of the SCIM resource representing the User's manager.",
            ),
            reference(
                "$ref",
                &["User"],
                "The URI of the SCIM resource representing the User's manager.",
            ),
            read_only(string(
                "displayName",
                "The displayName of the User's manager.",
            )),
        ],
        "The User's manager.",
    ),
];

/// Core Group attributes (RFC 7643 §4.2, §8.7.1).
pub static GROUP_ATTRIBUTES: &[AttributeDef] = &[
    {
        let mut d = string("displayName", "A human-readable name for the Group.");
        d.required = true;
        d
    },
    multi(complex(
        "members",
        &[
            immutable(string("value", "Identifier of the member of this Group.")),
            immutable(reference(
                "$ref",
                &["User", "Group"],
                "The URI corresponding to a SCIM resource that is a member of this Group.",
            )),
            immutable(with_canonical(
                string(
                    "type",
                    "A label indicating the type of resource, e.g., 'User' or 'Group'.",
                ),
                &["User", "Group"],
            )),
            string(
                "display",
                "A human-readable name, primarily used for display purposes.",
            ),
        ],
        "A list of members of the Group.",
    )),
];

/// The User schema.
pub static USER: SchemaDef = SchemaDef {
    id: USER_SCHEMA,
    name: "User",
    description: "User Account",
    attributes: USER_ATTRIBUTES,
};

/// The Enterprise User extension schema.
pub static ENTERPRISE_USER: SchemaDef = SchemaDef {
    id: ENTERPRISE_USER_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: ENTERPRISE_USER_ATTRIBUTES,
};

/// The Group schema.
pub static GROUP: SchemaDef = SchemaDef {
    id: GROUP_SCHEMA,
    name: "Group",
    description: "Group",
    attributes: GROUP_ATTRIBUTES,
};

static USER_EXTENSIONS: &[&SchemaDef] = &[&ENTERPRISE_USER];

/// Every schema this service provider supports.
pub static ALL_SCHEMAS: [&SchemaDef; 3] = [&USER, &ENTERPRISE_USER, &GROUP];

/// The resource types this crate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// `urn:ietf:params:scim:schemas:core:2.0:User` (+ Enterprise extension).
    User,
    /// `urn:ietf:params:scim:schemas:core:2.0:Group`.
    Group,
}

impl ResourceKind {
    /// The core schema of this kind.
    pub fn core_schema(self) -> &'static SchemaDef {
        match self {
            ResourceKind::User => &USER,
            ResourceKind::Group => &GROUP,
        }
    }

    /// Extension schemas this kind supports.
    pub fn extensions(self) -> &'static [&'static SchemaDef] {
        match self {
            ResourceKind::User => USER_EXTENSIONS,
            ResourceKind::Group => &[],
        }
    }

    /// The extension schema of this kind named `urn` (any case).
    pub fn extension(self, urn: &str) -> Option<&'static SchemaDef> {
        self.extensions()
            .iter()
            .copied()
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }

    /// The resource type name (`User`, `Group`).
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }

    /// Guesses the kind of a resource from its `schemas` (Group when the
    /// core Group URN is listed, User otherwise).
    pub fn of_resource(resource: &serde_json::Value) -> ResourceKind {
        let is_group = resource
            .get("schemas")
            .and_then(|s| s.as_array())
            .is_some_and(|s| {
                s.iter()
                    .filter_map(|v| v.as_str())
                    .any(|v| v.eq_ignore_ascii_case(GROUP_SCHEMA))
            });
        if is_group {
            ResourceKind::Group
        } else {
            ResourceKind::User
        }
    }
}

/// The schemas' own spelling of an attribute or sub-attribute name that
/// any of them defines (`DISPLAYNAME` → `displayName`). Every name is
/// spelled the same in every schema that has it, so no context is needed.
pub fn canonical_spelling(name: &str) -> Option<&'static str> {
    fn search(defs: &'static [AttributeDef], name: &str) -> Option<&'static str> {
        defs.iter().find_map(|d| {
            if d.name.eq_ignore_ascii_case(name) {
                Some(d.name)
            } else {
                search(d.sub_attributes, name)
            }
        })
    }
    search(COMMON_ATTRIBUTES, name).or_else(|| {
        ALL_SCHEMAS
            .iter()
            .find_map(|schema| search(schema.attributes, name))
    })
}

/// The attribute list a (possibly URN-qualified) top-level name lives in.
pub fn attributes_for(kind: ResourceKind, schema: Option<&str>) -> Option<&'static [AttributeDef]> {
    let Some(urn) = schema else {
        return Some(kind.core_schema().attributes);
    };
    if urn.eq_ignore_ascii_case(kind.core_schema().id) {
        return Some(kind.core_schema().attributes);
    }
    kind.extension(urn).map(|s| s.attributes)
}

/// The definition of a top-level attribute (common attributes included).
pub fn top_level_def(
    kind: ResourceKind,
    schema: Option<&str>,
    name: &str,
) -> Option<&'static AttributeDef> {
    let core_or_none = schema.is_none_or(|urn| urn.eq_ignore_ascii_case(kind.core_schema().id));
    if core_or_none && let Some(d) = find(COMMON_ATTRIBUTES, name) {
        return Some(d);
    }
    find(attributes_for(kind, schema)?, name)
}

/// The definition `path` designates: the sub-attribute's when it has one.
pub fn attribute_def(
    kind: ResourceKind,
    path: &crate::filter::AttrPath,
) -> Option<&'static AttributeDef> {
    let top = top_level_def(kind, path.schema.as_deref(), &path.name)?;
    match &path.sub_attr {
        Some(sub) => top.sub(sub),
        None => Some(top),
    }
}
