//! Why a read of the read model failed: the database is unavailable (busy, locked, no
//! connection free within 30 s: retry), or a row does not decode (the read model is corrupt:
//! retrying will not help; rebuild it from the log).

/// A failed read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The database did not answer: retry shortly.
    #[error("the read model is unavailable: {}", crate::pg_error::Described(.0))]
    Unavailable(sqlx::Error),
    /// A row does not decode into what the projector writes.
    #[error(
        "the read model holds a row that does not decode: {}",
        crate::pg_error::Described(.0)
    )]
    Corrupt(sqlx::Error),
    /// The snapshot read is older than what the read model had applied when the read
    /// began: it went back (a rebuild cleared it) and is being applied again.
    #[error(
        "the read model went back from sequence {floor} to {seq} (it is being rebuilt from \
         the log)"
    )]
    WentBack {
        /// What was applied when the read began.
        floor: u64,
        /// What the snapshot had applied.
        seq: u64,
    },
}

impl From<sqlx::Error> for ReadError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match e {
            E::ColumnDecode { .. }
            | E::Decode(_)
            | E::ColumnNotFound(_)
            | E::ColumnIndexOutOfBounds { .. }
            | E::TypeNotFound { .. } => Self::Corrupt(e),
            other => Self::Unavailable(other),
        }
    }
}

/// The error of a column whose value does not decode into what the projector writes
/// there: the mark of a corrupt row, whatever the column holds.
pub(crate) fn bad_column(
    column: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.into(),
        source: Box::new(e),
    }
}

impl ReadError {
    /// A column whose text does not parse as what the projector writes there.
    pub(crate) fn malformed(
        column: &str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Corrupt(bad_column(column, e))
    }

    /// Whether retrying may help.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::WentBack { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_failures_are_corruption_and_the_rest_unavailability() {
        let decode = sqlx::Error::ColumnDecode {
            index: "content_type".into(),
            source: "not a content type".into(),
        };
        assert!(!ReadError::from(decode).is_unavailable());
        assert!(ReadError::from(sqlx::Error::PoolTimedOut).is_unavailable());
    }
}
