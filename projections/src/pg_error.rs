//! What a PostgreSQL failure says to whoever runs keyledger: the server's message and
//! its SQLSTATE, without sqlx's "at line N" (the line of PostgreSQL's own C source that
//! raised it, which reads as a line of the operator's), and for the failures met when
//! setting a read model up, what to do.

use std::fmt;

/// `sqlx::Error` shown to an operator.
pub struct Described<'a>(pub &'a sqlx::Error);

/// A failed migration shown to an operator: its statement's error as [`Described`].
pub fn migration(e: &sqlx::migrate::MigrateError) -> String {
    use sqlx::migrate::MigrateError as M;
    match e {
        M::Execute(e) => Described(e).to_string(),
        M::ExecuteMigration(e, version) => format!("migration {version}: {}", Described(e)),
        other => other.to_string(),
    }
}

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            // SQLite's errors (a reader's pool of either dialect meets them) are sqlx's.
            sqlx::Error::Database(db) => {
                let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() else {
                    return write!(f, "{}", self.0);
                };
                write!(f, "{} (SQLSTATE {})", pg.message(), pg.code())?;
                if let Some(hint) = hint(pg.code()) {
                    write!(f, "; {hint}")?;
                }
                // The server's own advice; its DETAIL may quote row values, so not that.
                if let Some(theirs) = pg.hint() {
                    write!(f, " (PostgreSQL's hint: {theirs})")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_met_when_setting_up_say_what_to_do_and_others_stay_sqlxs() {
        for code in ["28P01", "28000", "3D000", "53300", "42501"] {
            assert!(hint(code).is_some(), "{code}");
        }
        assert_eq!(hint("23505"), None);
        let timed_out = sqlx::Error::PoolTimedOut;
        assert_eq!(Described(&timed_out).to_string(), timed_out.to_string());
    }
}
