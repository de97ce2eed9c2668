//! The one rejection type every edge (NATS replies, HTTP responses, the CLI) maps from.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code. These strings are part of the public
/// command protocol: clients match on them, so they never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or a value is out of range.
    Invalid,
    /// No valid credential was presented.
    Unauthorized,
    /// The caller is known but not allowed to do this.
    Forbidden,
    /// A project quota is reached: the object would be one more than its limit
    /// allows (HTTP 403, as Barbican answers; AWS's `LimitExceededException`).
    QuotaExceeded,
    /// The addressed resource does not exist (or is not visible to the caller).
    NotFound,
    /// The request contradicts the current state (e.g. a payload is already stored).
    Conflict,
    /// A payload or body exceeds the configured limit.
    TooLarge,
    /// The caller has too many requests in flight; retrying shortly works.
    TooManyRequests,
    /// A dependency (NATS, the key store) is unreachable; retrying later may work.
    Unavailable,
    /// A bug or corrupted data; the message says which.
    Internal,
}

impl ErrorCode {
    /// The HTTP status the code answers with (and Barbican reports in orders).
    pub fn http_status(self) -> u16 {
        match self {
            Self::Invalid => 400,
            Self::Unauthorized => 401,
            Self::Forbidden | Self::QuotaExceeded => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::TooLarge => 413,
            Self::TooManyRequests => 429,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::QuotaExceeded => "quota_exceeded",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::TooLarge => "too_large",
            Self::TooManyRequests => "too_many_requests",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

/// Why a command or read was refused: a stable code and a message a person can act on
/// (what was wrong, which value, what to do instead). Messages never contain payloads
/// or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct Rejection {
    /// The stable code.
    pub code: ErrorCode,
    /// What went wrong and what to do about it.
    pub message: String,
}

const COMMAND_ID_TAKEN: &str = " was already used for another command";

/// Whether a refusal (its code and message, as a reply carries them) is
/// [`Rejection::command_id_taken`]'s.
pub fn is_command_id_taken(code: ErrorCode, message: &str) -> bool {
    code == ErrorCode::Conflict && message.contains(COMMAND_ID_TAKEN)
}

const OTHER_CREATE: &str = " already created secret ";

/// Whether a refusal is [`Rejection::other_create`]'s: a create's command id that
/// made a secret with other fields or another payload.
pub fn is_other_create(code: ErrorCode, message: &str) -> bool {
    code == ErrorCode::Conflict && message.contains(OTHER_CREATE)
}

const INCARNATIONS_EXHAUSTED: &str = " times in project ";

/// Whether a refusal is [`Rejection::incarnations_exhausted`]'s.
pub fn is_incarnations_exhausted(code: ErrorCode, message: &str) -> bool {
    code == ErrorCode::Conflict && message.contains(INCARNATIONS_EXHAUSTED)
}

/// Longest message a refusal carries, in bytes. Messages quote the value at fault,
/// and a value can be as long as a request allows (a 400,000-character metadata key,
/// a 200,000-character idempotency key): unbounded, each such request would be
/// answered, and logged, at its own length.
pub const MESSAGE_LIMIT: usize = 2048;

/// `message`, or, past [`MESSAGE_LIMIT`], its start and its end with what lies between
/// left out: the start names what is wrong, the end usually says what to do.
pub fn bounded(message: String) -> String {
    if message.len() <= MESSAGE_LIMIT {
        return message;
    }
    let keep = (MESSAGE_LIMIT - 64) / 2;
    let mut head = keep;
    while !message.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = message.len() - keep;
    while !message.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{} … ({} bytes left out) … {}",
        &message[..head],
        tail - head,
        &message[tail..]
    )
}

impl Rejection {
    /// A rejection with the given code and message (bounded: [`bounded`]).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: bounded(message.into()),
        }
    }

    /// [`ErrorCode::Invalid`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }

    /// [`ErrorCode::Unauthorized`].
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// [`ErrorCode::Forbidden`].
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// [`ErrorCode::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// [`ErrorCode::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// A command id another command took (on the same aggregate, or on another within
    /// JetStream's duplicate window), with what follows `detail`.
    pub fn command_id_taken(command_id: impl std::fmt::Display, detail: &str) -> Self {
        Self::conflict(format!("command_id {command_id}{COMMAND_ID_TAKEN}{detail}"))
    }

    /// A create whose command id made `secret` with other values of `differs` (the
    /// fields, or the payload) than this request asks for.
    pub fn other_create(
        command_id: impl std::fmt::Display,
        secret: impl std::fmt::Display,
        differs: &str,
    ) -> Self {
        Self::conflict(format!(
            "command_id (Idempotency-Key) {command_id}{OTHER_CREATE}{secret} with another \
             {differs}; send a new key for a new secret"
        ))
    }

    /// A unique name created and deleted `times` times in `project`, each time under
    /// an id of its own, which has none left.
    pub fn incarnations_exhausted(name: &str, times: u32, project: impl std::fmt::Display) -> Self {
        Self::conflict(format!(
            "the name {name:?} was created and deleted {times}{INCARNATIONS_EXHAUSTED}\
             {project}; choose another name"
        ))
    }

    /// [`ErrorCode::TooLarge`].
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TooLarge, message)
    }

    /// [`ErrorCode::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// [`ErrorCode::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_told_apart_by_their_words_are_recognised_each_by_its_own() {
        let refusals = [
            Rejection::command_id_taken("c1", ": send a new one"),
            Rejection::other_create("c1", "s1", "payload"),
            Rejection::incarnations_exhausted("db/x", 1000, "p1"),
        ];
        for (i, r) in refusals.iter().enumerate() {
            let found = [
                is_command_id_taken(r.code, &r.message),
                is_other_create(r.code, &r.message),
                is_incarnations_exhausted(r.code, &r.message),
            ];
            let expected: [bool; 3] = std::array::from_fn(|j| j == i);
            assert_eq!(found, expected, "{}", r.message);
        }
    }

    #[test]
    fn a_message_within_the_limit_is_kept_whole() {
        let message = "x".repeat(MESSAGE_LIMIT);
        assert_eq!(bounded(message.clone()), message);
    }

    #[test]
    fn a_longer_message_keeps_its_start_and_its_end() {
        let message = format!(
            "metadata key \"{}\" is too long; the limit is 255 characters",
            "ké".repeat(100_000)
        );
        let cut = bounded(message.clone());
        assert!(cut.len() <= MESSAGE_LIMIT, "{}", cut.len());
        assert!(cut.starts_with("metadata key \"kéké"), "{cut}");
        assert!(cut.ends_with("the limit is 255 characters"), "{cut}");
        // What is left out is counted to the byte.
        let left_out: usize = cut
            .split_once(" … (")
            .and_then(|(_, rest)| rest.split_once(" bytes left out)"))
            .and_then(|(n, _)| n.parse().ok())
            .expect("the count of what is left out");
        let marker = format!(" … ({left_out} bytes left out) … ");
        assert_eq!(cut.len() - marker.len() + left_out, message.len());
    }
}
