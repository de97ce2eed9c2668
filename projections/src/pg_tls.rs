//! TLS with PostgreSQL (docs/operations.md, "PostgreSQL over TLS"): checks of a URL's
//! TLS parameters before sqlx reads them, the warning for a server reached without
//! verifying it, and what a failed handshake says to do.
//!
//! sqlx (rustls, ring) reads libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey`,
//! from the URL or `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY`. Unlike
//! libpq it trusts the system's roots besides `sslrootcert`, so `verify-ca`, which
//! checks no name, lets through a certificate any public CA issued for any name; only
//! `verify-full` verifies the server.

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// Why a URL's TLS parameters are refused before connecting.
#[derive(Debug, thiserror::Error)]
pub enum TlsParameterError {
    /// A password parameter sqlx does not read (it would log its value).
    #[error(
        "the parameter {0} is not read by keyledger's PostgreSQL client, which logs what it \
         does not read: take it out of the URL (sslkey takes an unencrypted key file, \
         readable only by keyledger's user; a password goes in PGPASSWORD or ~/.pgpass)"
    )]
    Unread(String),
    /// A certificate or key file that cannot be read.
    #[error("{parameter} names {path}, which cannot be read: {source}")]
    File {
        /// The parameter (or environment variable) naming it.
        parameter: String,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Checks `url`'s TLS parameters: no password parameter but `password` itself, which
/// sqlx would log (`sslpassword`: it cannot decrypt a key anyway), and certificate and
/// key files that can be read, so a missing one is named rather than failing the
/// handshake with a bare "No such file or directory". Runs before sqlx parses `url`.
pub fn check_parameters(url: &str) -> Result<(), TlsParameterError> {
    let Ok(parsed) = url::Url::parse(url) else {
        // sqlx refuses it too, saying nothing of its parameters.
        return Ok(());
    };
    let mut files = Vec::new();
    for (key, value) in parsed.query_pairs() {
        if key != "password" && key.to_ascii_lowercase().contains("password") {
            return Err(TlsParameterError::Unread(key.into_owned()));
        }
        if matches!(key.as_ref(), "sslrootcert" | "sslcert" | "sslkey") {
            files.push((key.into_owned(), value.into_owned()));
        }
    }
    for (parameter, variable) in [
        ("sslrootcert", "PGSSLROOTCERT"),
        ("sslcert", "PGSSLCERT"),
        ("sslkey", "PGSSLKEY"),
    ] {
        if !files.iter().any(|(key, _)| key == parameter)
            && let Ok(path) = std::env::var(variable)
        {
            files.push((variable.to_owned(), path));
        }
    }
    for (parameter, path) in files {
        // sqlx takes a value that is a PEM document itself as that document.
        if path.trim_start().starts_with("-----BEGIN") {
            continue;
        }
        if let Err(source) = std::fs::File::open(&path) {
            return Err(TlsParameterError::File {
                parameter,
                path,
                source,
            });
        }
    }
    Ok(())
}

/// The `sslmode` of a connection that reaches its server over the network without
/// verifying it (every mode but `verify-full`, `verify-ca` included: see the module's
/// comment): `None` for a Unix socket or a loopback address, where no other machine
/// sits in between.
pub fn unverified_off_host(options: &PgConnectOptions) -> Option<&'static str> {
    let host = options.get_host();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if options.get_socket().is_some() || host.starts_with('/') || loopback {
        return None;
    }
    match options.get_ssl_mode() {
        PgSslMode::VerifyFull => None,
        PgSslMode::VerifyCa => Some("verify-ca"),
        PgSslMode::Disable => Some("disable"),
        PgSslMode::Allow => Some("allow"),
        PgSslMode::Prefer => Some("prefer"),
        PgSslMode::Require => Some("require"),
    }
}

/// Warns, once per process, of a server reached over the network without verifying it.
pub fn warn_if_unverified(options: &PgConnectOptions) {
    let Some(mode) = unverified_off_host(options) else {
        return;
    };
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            host = options.get_host(),
            sslmode = mode,
            "the read model's PostgreSQL is on another host and its certificate is not \
             verified: a machine in between could read and change the read model; add \
             sslmode=verify-full&sslrootcert=<its CA's PEM file> to the URL (verify-ca \
             checks no name, and the system's roots are trusted besides sslrootcert; \
             docs/operations.md, \"PostgreSQL over TLS\")"
        );
    });
}

/// Whether `error` is TLS with the server refused over certificates or settings (the
/// server's certificate not trusted or not for the host, a client certificate
/// refused, a server that offers no TLS, a file sqlx could not read as PEM): a new
/// session fails the same, so a standby does not wait through it.
pub fn refused(error: &sqlx::Error) -> bool {
    use rustls::AlertDescription as Alert;
    match error {
        sqlx::Error::Tls(_) => true,
        // rustls's errors reach sqlx inside an I/O error.
        sqlx::Error::Io(e) => {
            e.get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|e| match e {
                    rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented => true,
                    rustls::Error::AlertReceived(alert) => matches!(
                        alert,
                        Alert::HandshakeFailure
                            | Alert::BadCertificate
                            | Alert::UnsupportedCertificate
                            | Alert::CertificateRevoked
                            | Alert::CertificateExpired
                            | Alert::CertificateUnknown
                            | Alert::UnknownCA
                            | Alert::AccessDenied
                            | Alert::CertificateRequired
                            | Alert::ProtocolVersion
                            | Alert::InsufficientSecurity
                    ),
                    _ => false,
                })
        }
        _ => false,
    }
}

/// What to check after `error`, to follow its message: empty unless TLS was refused
/// ([`refused`]). The server's own refusals (no client certificate, a plain connection
/// that `pg_hba.conf` does not admit) come with its message, which says why.
pub fn hint(error: &sqlx::Error) -> &'static str {
    if !refused(error) {
        return "";
    }
    match error {
        sqlx::Error::Tls(e) if e.to_string().contains("does not support TLS") => {
            "; the server offers no TLS: turn `ssl` on in its postgresql.conf (with \
             ssl_cert_file and ssl_key_file)"
        }
        _ => {
            "; TLS with the server failed: the URL's sslrootcert must name the CA (PEM file) \
             that signed the server's certificate, issued for the URL's host, and sslcert \
             and sslkey a client certificate and unencrypted key (PEM files) the server \
             accepts (docs/operations.md, \"PostgreSQL over TLS\")"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn only_a_server_on_another_host_not_fully_verified_is_warned_of() {
        // Every URL names its sslmode, so PGSSLMODE in the environment changes nothing.
        let mode = |url: &str| unverified_off_host(&PgConnectOptions::from_str(url).unwrap());
        for (url, expected) in [
            ("postgres://kl@db.example.com/kl?sslmode=prefer", "prefer"),
            ("postgres://kl@10.0.0.5:5433/kl?sslmode=require", "require"),
            ("postgres://kl@10.0.0.5/kl?sslmode=disable", "disable"),
            (
                "postgres://kl@db.example.com/kl?sslmode=verify-ca&sslrootcert=/ca.pem",
                "verify-ca",
            ),
            (
                "postgres://kl@localhost.example.com/kl?sslmode=prefer",
                "prefer",
            ),
            ("postgres://kl@127.0.0.1.nip.io/kl?sslmode=prefer", "prefer"),
        ] {
            assert_eq!(mode(url), Some(expected), "{url}");
        }
        for quiet in [
            "postgres://kl@db.example.com/kl?sslmode=verify-full&sslrootcert=/ca.pem",
            "postgres://kl@localhost/kl?sslmode=prefer",
            "postgres://kl@127.0.0.1:5432/kl?sslmode=disable",
            "postgres://kl@localhost/kl?host=/run/postgresql&port=5499&sslmode=prefer",
        ] {
            assert_eq!(mode(quiet), None, "{quiet}");
        }
    }

    #[test]
    fn a_password_parameter_sqlx_would_log_and_an_unreadable_file_are_named() {
        for url in [
            "postgres://kl@db/kl?sslmode=verify-full&sslpassword=s3cret",
            "postgres://kl@db/kl?Password=s3cret",
        ] {
            let refused = check_parameters(url).unwrap_err().to_string();
            assert!(refused.starts_with("the parameter "), "{refused}");
            assert!(!refused.contains("s3cret"), "{refused}");
        }
        let missing = check_parameters(
            "postgres://kl@db/kl?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap_err()
        .to_string();
        assert!(
            missing.starts_with("sslrootcert names /nonexistent/ca.pem, which cannot be read"),
            "{missing}"
        );
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let url = format!(
            "postgres://kl@db/kl?password=p&sslmode=verify-full&sslrootcert={}",
            ca.display()
        );
        check_parameters(&url).unwrap();
    }
}
