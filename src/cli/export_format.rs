//! The format of `keyledger audit export`, which `audit verify --file` reads back: one
//! JSON object per line, a signed checkpoint or a commit as stored (base64). Fields
//! are declared in the order they are written.

use serde::{Deserialize, Serialize};

/// One line of an export, as written.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ExportLine {
    /// A signed checkpoint note, as stored.
    Checkpoint {
        /// The note.
        checkpoint: String,
    },
    /// A commit: its stream sequence, its subject and its bytes in base64.
    Commit {
        /// The bytes, base64.
        commit: String,
        /// The stream sequence.
        seq: u64,
        /// The subject.
        subject: String,
    },
}

/// One line of an export, as read: the fields of either kind, borrowed from the line
/// (a million-commit export is read without an allocation per field, and without
/// serde's buffering of untagged enums).
#[derive(Debug, Deserialize)]
pub struct ReadLine<'a> {
    /// A checkpoint line's note.
    #[serde(borrow, default)]
    pub checkpoint: Option<std::borrow::Cow<'a, str>>,
    /// A commit line's bytes, base64 (which never needs unescaping).
    #[serde(borrow, default)]
    pub commit: Option<&'a str>,
    /// A commit line's stream sequence.
    #[serde(default)]
    pub seq: Option<u64>,
    /// A commit line's subject.
    #[serde(borrow, default)]
    pub subject: Option<std::borrow::Cow<'a, str>>,
}
