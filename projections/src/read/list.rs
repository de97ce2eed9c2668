//! Listings: Barbican's filters and sort keys, paged after the read policy has
//! filtered each row.

use crate::read::ReadError;
use domain::ids::{ProjectId, UserId};
use domain::timestamp::Timestamp;

use super::{ReadModel, SecretRow, Snapshot, on_pool};

/// Which secrets a listing considers, before the policy filters each row.
#[derive(Debug, Clone)]
pub enum ListScope<'a> {
    /// A project's secrets. Unless the caller is a project admin, only rows the
    /// caller could possibly read are considered: non-private ones, the caller's own,
    /// and those listing the caller.
    Project {
        /// The project.
        project: &'a ProjectId,
        /// The caller.
        user: &'a UserId,
        /// Whether the caller is an admin of the project.
        admin: bool,
    },
    /// Secrets whose ACL lists the user, in any project (Barbican's `acl_only=true`).
    SharedWith(&'a UserId),
}

/// A comparison of a time column with an instant (Barbican's `gt:`, `gte:`, `lt:`,
/// `lte:` prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// `>`.
    Gt,
    /// `>=`.
    Gte,
    /// `<`.
    Lt,
    /// `<=`.
    Lte,
    /// `=` (no prefix).
    Eq,
}

impl Compare {
    pub(crate) fn sql(self) -> &'static str {
        match self {
            Self::Gt => " > ",
            Self::Gte => " >= ",
            Self::Lt => " < ",
            Self::Lte => " <= ",
            Self::Eq => " = ",
        }
    }
}

/// A time column a listing can filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeColumn {
    /// `created`.
    Created,
    /// `updated`.
    Updated,
    /// `expiration`.
    Expiration,
}

impl TimeColumn {
    pub(crate) fn sql(self) -> &'static str {
        match self {
            Self::Created => "s.created_ms",
            Self::Updated => "s.updated_ms",
            Self::Expiration => "s.expiration_ms",
        }
    }
}

/// A sort key of a listing (Barbican's `sort=<key>:<asc|desc>,…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Creation time.
    Created,
    /// Time of the last change.
    Updated,
    /// Expiration.
    Expiration,
    /// Name.
    Name,
    /// Algorithm.
    Algorithm,
    /// Mode.
    Mode,
    /// Bit length.
    BitLength,
    /// Secret type.
    SecretType,
}

impl SortKey {
    pub(crate) fn sql(self) -> &'static str {
        match self {
            Self::Created => "s.created_ms",
            Self::Updated => "s.updated_ms",
            Self::Expiration => "s.expiration_ms",
            Self::Name => "s.name",
            Self::Algorithm => "s.algorithm",
            Self::Mode => "s.mode",
            Self::BitLength => "s.bit_length",
            Self::SecretType => "s.secret_type",
        }
    }
}

impl SortKey {
    /// Whether the key's column holds integers (else text).
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            Self::Created | Self::Updated | Self::Expiration | Self::BitLength
        )
    }
}

/// Where a page ended in its listing's order, for the next page to start after it
/// (AWS's `NextToken`): unlike an offset, a position does not move when rows before it
/// are deleted, restored or created, so a secret listed throughout is neither skipped
/// nor repeated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// The value of the listing's first sort key at that row (`None` for NULL, or
    /// when the listing has no sort key).
    pub key: Option<KeyValue>,
    /// Its creation time, the first tie-breaker.
    pub created_ms: i64,
    /// Its id, the last tie-breaker.
    pub id: String,
}

/// A sort key's value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum KeyValue {
    /// An integer column's (times in milliseconds, bit lengths).
    Integer(i64),
    /// A text column's.
    Text(String),
}

/// Filters, sorting and paging of a secret listing (Barbican's query parameters).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Exact name.
    pub name: Option<String>,
    /// Exact secret type.
    pub secret_type: Option<String>,
    /// Exact algorithm (`alg`).
    pub algorithm: Option<String>,
    /// Exact mode.
    pub mode: Option<String>,
    /// Exact bit length (`bits`).
    pub bit_length: Option<i64>,
    /// Time ranges, all of which must hold.
    pub times: Vec<(TimeColumn, Compare, i64)>,
    /// Sort keys with `true` for descending; oldest first when empty.
    pub sort: Vec<(SortKey, bool)>,
    /// Page size.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u32,
    /// Where the previous page ended (only rows after it are listed, `offset` still
    /// skipping among them); paging by position takes at most one sort key.
    pub after: Option<Position>,
    /// Whether secrets scheduled for deletion are listed too (AWS's
    /// `IncludePlannedDeletion`).
    pub include_pending_deletion: bool,
}

/// A page of secrets and the total matching the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The page.
    pub secrets: Vec<SecretRow>,
    /// All rows matching the filter (after `after`, when given).
    pub total: u64,
    /// Where the page ended: its last row's position.
    pub last: Option<Position>,
}

impl ReadModel {
    /// One page of the live secrets in `scope` that `keep` admits, in the filter's
    /// order (oldest first by default). `keep` is the caller's read policy, applied to
    /// every row before paging, so `total` and the pages count only what the caller
    /// may see.
    pub async fn list_secrets(
        &self,
        scope: ListScope<'_>,
        filter: &ListFilter,
        now: Timestamp,
        keep: impl Fn(&SecretRow) -> bool,
    ) -> Result<Snapshot<Page>, ReadError> {
        self.fresh(async {
            on_pool!(
                &self.pool,
                list_secrets(scope, filter, now.unix_millis(), keep)
            )
        })
        .await
    }
}
