//! ACLs as Barbican shows them.

use domain::secret::acl::{Acl, Conditions};
use projections::read::AclTimes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::time;

/// The `read` operation's ACL.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReadAcl {
    /// Whether the project's roles reach the object (false: private).
    #[serde(rename = "project-access")]
    pub project_access: bool,
    /// Users who may read it from any project (shown once an ACL was set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    /// keyledger's conditions on the grants: `source_cidrs`, `utc_hours`, `weekdays`
    /// (shown when there are any).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub conditions: Option<Conditions>,
    /// When the ACL was set (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When it last changed (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
}

/// An object's ACL, by operation (`read` is the only one).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AclView {
    /// Who may read it.
    pub read: ReadAcl,
}

impl AclView {
    /// The ACL; one never set (or reset) is Barbican's default,
    /// `{"read": {"project-access": true}}`.
    pub fn of(acl: &Acl, set: Option<&AclTimes>) -> Self {
        let read = match set {
            None if acl == &Acl::default() => ReadAcl {
                project_access: true,
                users: None,
                conditions: None,
                created: None,
                updated: None,
            },
            _ => ReadAcl {
                project_access: acl.project_access,
                users: Some(acl.users.iter().map(|u| u.as_str().to_owned()).collect()),
                conditions: (!acl.conditions.is_empty()).then(|| acl.conditions.clone()),
                created: set.map(|t| time(&t.created)),
                updated: set.map(|t| time(&t.updated)),
            },
        };
        Self { read }
    }
}

/// The ACL's URL, as a change answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct AclRef {
    /// The ACL's URL.
    pub acl_ref: String,
}
