//! What a PostgreSQL failure says to whoever runs keyledger: the server's message and
//! its SQLSTATE, without sqlx's "at line N" (the line of PostgreSQL's own C source that
//! raised it, which reads as a line of the operator's), and for the failures met when
//! setting a read model up, what to do.

use std::fmt;

/// `sqlx::Error` shown to an operator.
pub struct Described<'a>(pub &'a sqlx::Error);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            sqlx::Error::Database(db) => {
                f.write_str(db.message())?;
                if let Some(code) = db.code() {
                    write!(f, " (SQLSTATE {code})")?;
                    if let Some(hint) = hint(&code) {
                        write!(f, "; {hint}")?;
                    }
                }
                Ok(())
            }
            other => write!(f, "{other}{}", crate::pg_tls::hint(other)),
        }
    }
}

/// What to do about the server's refusal `code`, for those met when setting up.
fn hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "28P01" => {
            "the password of the URL's role is not the server's: check PGPASSWORD, \
             ~/.pgpass or the URL's password"
        }
        "28000" => {
            "the server admits no such login: check the role's name, and that its \
             pg_hba.conf has a line for this role, database and host"
        }
        "3D000" => {
            "create the database (`createdb -O <role> <database>`) or name one that exists \
             in the URL"
        }
        "53300" => {
            "the server is at its max_connections: raise it in postgresql.conf, or run \
             fewer keyledger processes against it"
        }
        "42501" => {
            "the URL's role lacks a privilege on the read model: the projector's role \
             creates and writes its tables, an API's needs SELECT on them \
             (docs/operations.md, Read side)"
        }
        _ => return None,
    })
}
