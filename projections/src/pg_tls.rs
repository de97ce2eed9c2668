//! TLS with PostgreSQL (docs/operations.md, "PostgreSQL over TLS"): checks of a URL's
//! parameters before sqlx reads them, the warning for a server reached without
//! verifying it, and what a failed handshake says to do.
//!
//! sqlx (rustls, ring) reads libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey`,
//! from the URL or `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY`. Unlike
//! libpq it trusts the system's roots besides `sslrootcert`, so `verify-ca`, which
//! checks no name, lets through a certificate any public CA issued for any name; only
//! `verify-full` verifies the server.

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// Why a URL's parameters are refused before connecting.
#[derive(Debug, thiserror::Error)]
pub enum TlsParameterError {
    /// A password parameter sqlx does not read.
    #[error(
        "the parameter {0} is not read by keyledger's PostgreSQL client: take it out of the \
         URL (sslkey takes an unencrypted key file, readable only by keyledger's user; a \
         password goes in PGPASSWORD or ~/.pgpass)"
    )]
    Unread(String),
    /// A parameter given twice (or under two of its names).
    #[error(
        "the parameter {0} is given more than once (under one name or two of its names, \
         such as sslkey and ssl-key): give it once"
    )]
    Repeated(String),
    /// A PEM document given where sqlx reads a file's path.
    #[error(
        "{0} holds a PEM document where a file's path goes (a URL's parameters always take \
         a path; a PGSSL… variable takes the PEM only as its whole value): put it in a file \
         readable only by keyledger's user"
    )]
    Inline(String),
    /// A certificate or key file that cannot be read.
    #[error("{parameter} names {path}, which cannot be read ({why})")]
    File {
        /// The parameter (or environment variable) naming it.
        parameter: String,
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// A file of CAs, or a client certificate's, that holds no certificate.
    #[error(
        "{parameter} {given} holds no certificate (a PEM \"-----BEGIN CERTIFICATE-----\" \
         block, its lines unindented): {consequence}"
    )]
    NoCertificate {
        /// The parameter (or environment variable) naming it.
        parameter: String,
        /// The file, or the variable's own value.
        given: Given,
        /// What would follow.
        consequence: &'static str,
    },
    /// A client key that holds no key sqlx reads.
    #[error(
        "{parameter} {given} holds no private key (a PEM \"-----BEGIN PRIVATE KEY-----\" \
         block, or an RSA or EC one, its lines unindented): the client certificate's key \
         goes there"
    )]
    NoKey {
        /// The parameter (or environment variable) naming it.
        parameter: String,
        /// The file, or the variable's own value.
        given: Given,
    },
    /// A client key that is encrypted, which sqlx cannot decrypt.
    #[error(
        "{parameter} {given} holds an encrypted key: keyledger's PostgreSQL client reads \
         only unencrypted ones; write one with `openssl pkey -in {file} -out <new file>` \
         and make it readable only by keyledger's user",
        file = given.file()
    )]
    EncryptedKey {
        /// The parameter (or environment variable) naming it.
        parameter: String,
        /// The file, or the variable's own value.
        given: Given,
    },
    /// A client key file others may read, which libpq refuses too.
    #[error(
        "{parameter} names {path}, which others may read (mode {mode:o}): {}; libpq \
         refuses it too",
        if *roots {
            "a key file of root's that another user reads may be readable by its group at \
             most, the group keyledger's user is in: `chmod 640` it"
        } else {
            "a private key must be readable only by its owner: `chmod 600` it"
        }
    )]
    KeyExposed {
        /// The parameter (or environment variable) naming it.
        parameter: String,
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
        /// Whether it is root's, read by another user (libpq's second rule).
        roots: bool,
    },
}

/// Where a certificate or key was given: a file, or a `PGSSL…` variable's own value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Given {
    /// A file's path.
    File(String),
    /// The PEM text itself (never shown).
    Value,
}

impl Given {
    /// What an `openssl` command would take: the file, or a placeholder for it.
    fn file(&self) -> &str {
        match self {
            Self::File(path) => path,
            Self::Value => "<its file>",
        }
    }
}

impl std::fmt::Display for Given {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "names {path}, which"),
            Self::Value => f.write_str("is PEM text that"),
        }
    }
}

/// What a certificate or key file the URL names must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    /// The CAs the server's certificate is checked against.
    Cas,
    /// The client's certificate.
    Certificate,
    /// The client certificate's key.
    Key,
}

/// The parameters sqlx reads from a URL (`PgConnectOptions::from_str`); `options[…]`
/// too. It logs any other, value included.
const READ: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// The parameters naming a file of CAs, and a client certificate or key, with the
/// environment variable sqlx reads when the URL names none.
const FILES: &[(&[&str], &str, Holds)] = &[
    (
        &["sslrootcert", "ssl-root-cert", "ssl-ca"],
        "PGSSLROOTCERT",
        Holds::Cas,
    ),
    (&["sslcert", "ssl-cert"], "PGSSLCERT", Holds::Certificate),
    (&["sslkey", "ssl-key"], "PGSSLKEY", Holds::Key),
];

/// `url` as sqlx is to read it, checked first: a password parameter other than
/// `password` itself (`sslpassword`: sqlx cannot decrypt a key anyway) is refused by
/// name; any other parameter sqlx does not read is left out, named in a warning
/// (sqlx would log it with its value); certificate and key files must be files that
/// can be read, and a file of CAs must hold a certificate, so a wrong one is named now
/// rather than failing the handshake with a bare "Is a directory" or trusting no CA of
/// its own. A URL that does not parse is returned as it is, for sqlx to refuse.
pub fn prepare(url: &str) -> Result<String, TlsParameterError> {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return Ok(url.to_owned());
    };
    let mut kept = Vec::new();
    let mut left_out = Vec::new();
    for (key, value) in parsed.query_pairs() {
        if key != "password" && key.to_ascii_lowercase().contains("password") {
            return Err(TlsParameterError::Unread(key.into_owned()));
        }
        if is_read(&key) {
            kept.push((key.into_owned(), value.into_owned()));
        } else {
            left_out.push(key.into_owned());
        }
    }
    // sqlx takes the last of a repeated parameter: checking the first would pass a file
    // sqlx never reads.
    for (i, (key, _)) in kept.iter().enumerate() {
        let aliases = FILES
            .iter()
            .find(|(names, _, _)| names.contains(&key.as_str()))
            .map_or(&[][..], |(names, _, _)| *names);
        if kept[i + 1..]
            .iter()
            .any(|(other, _)| other == key || aliases.contains(&other.as_str()))
        {
            return Err(TlsParameterError::Repeated(key.clone()));
        }
    }
    let key_loaded = loads_client_key(&kept, |variable| std::env::var(variable).ok());
    let check_mode = |parameter: &str, path: &str, holds: Holds| match holds {
        Holds::Key if key_loaded => check_key_mode(parameter, path),
        _ => Ok(()),
    };
    for (names, variable, holds) in FILES {
        let named = kept.iter().find(|(key, _)| names.contains(&key.as_str()));
        match named {
            Some((parameter, path)) => {
                // sqlx reads a URL's value as a path, whatever it holds; never shown
                // back, a key among it.
                if holds_pem(path) {
                    return Err(TlsParameterError::Inline(parameter.clone()));
                }
                check_file(parameter, path, *holds)?;
                check_mode(parameter, path, *holds)?;
            }
            None => match std::env::var(variable) {
                // The environment's value may be the PEM itself, as its whole value:
                // what sqlx takes for one (`CertificateInput::from`); any other value
                // is a path to it.
                Ok(pem) if is_inline_pem(&pem) => {
                    check_content(variable, Given::Value, pem.as_bytes(), *holds)?;
                }
                Ok(other) if holds_pem(&other) => {
                    return Err(TlsParameterError::Inline((*variable).to_owned()));
                }
                Ok(path) => {
                    check_file(variable, &path, *holds)?;
                    check_mode(variable, &path, *holds)?;
                }
                Err(_) => {}
            },
        }
    }
    if !left_out.is_empty() {
        // Once: every component of a process reads the URL.
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                parameters = %left_out.join(", "),
                "the read model's URL has parameters keyledger's PostgreSQL client does not \
                 read; they are ignored"
            );
        });
        parsed.query_pairs_mut().clear().extend_pairs(kept);
        return Ok(parsed.to_string());
    }
    Ok(url.to_owned())
}

/// Whether the client key is loaded, as libpq decides before checking its file's mode:
/// with a client certificate (a parameter of the URL `kept`, else from `env`; empty is
/// none), over TLS (an `sslmode` other than `disable`).
fn loads_client_key(kept: &[(String, String)], env: impl Fn(&str) -> Option<String>) -> bool {
    let given = |names: &[&str], variable: &str| {
        kept.iter()
            .find(|(key, _)| names.contains(&key.as_str()))
            .map(|(_, value)| value.clone())
            .or_else(|| env(variable))
            .filter(|value| !value.is_empty())
    };
    given(&["sslcert", "ssl-cert"], "PGSSLCERT").is_some()
        && given(&["sslmode", "ssl-mode"], "PGSSLMODE")
            .is_none_or(|mode| !mode.eq_ignore_ascii_case("disable"))
}

/// Whether sqlx reads a `PGSSL…` variable's `value` as the PEM itself rather than a
/// path: its test, in `sqlx_core::net::tls::CertificateInput`'s `From<String>`.
fn is_inline_pem(value: &str) -> bool {
    let trimmed = value.trim();
    trimmed.starts_with("-----BEGIN") && trimmed.ends_with("-----")
}

/// Whether `value` holds a PEM document (a key, perhaps, after some text such as
/// `openssl pkcs12`'s "Bag Attributes"): never to be shown.
pub fn holds_pem(value: &str) -> bool {
    value.contains("-----BEGIN")
}

/// Whether a PostgreSQL URL's parameter `key` is one sqlx reads ([`prepare`] leaves
/// the others out).
pub fn is_read(key: &str) -> bool {
    READ.contains(&key) || key.starts_with("options[")
}

/// Checks that `path` is a file this process can read, holding what it `holds`, so
/// that a wrong file is named now
/// rather than failing the handshake with sqlx's bare "no keys found" or trusting no
/// CA of its own. Nothing of the file is shown back.
fn check_file(parameter: &str, path: &str, holds: Holds) -> Result<(), TlsParameterError> {
    let unreadable = |why: String| TlsParameterError::File {
        parameter: parameter.to_owned(),
        path: path.to_owned(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| unreadable(e.to_string()))?;
    if !meta.is_file() {
        return Err(unreadable("not a file".into()));
    }
    let text = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    check_content(parameter, Given::File(path.to_owned()), &text, holds)
}

/// libpq's rule for a client key file it loads (`fe-secure-openssl.c`): no access for
/// group or others when the file is the process's user's, at most the group's read
/// when it is root's (a key shared through a group). Anyone else's file is left to
/// the reading. `path` is a readable file ([`check_file`]).
fn check_key_mode(parameter: &str, path: &str) -> Result<(), TlsParameterError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| TlsParameterError::File {
        parameter: parameter.to_owned(),
        path: path.to_owned(),
        why: e.to_string(),
    })?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let mode = meta.mode() & 0o7777;
    let (own, roots) = (meta.uid() == euid, meta.uid() == 0 && euid != 0);
    if (own && mode & 0o077 != 0) || (roots && mode & 0o037 != 0) {
        return Err(TlsParameterError::KeyExposed {
            parameter: parameter.to_owned(),
            path: path.to_owned(),
            mode,
            roots,
        });
    }
    Ok(())
}

/// Checks that `text`, given as `given`, holds what `holds` needs.
fn check_content(
    parameter: &str,
    given: Given,
    text: &[u8],
    holds: Holds,
) -> Result<(), TlsParameterError> {
    let has = |marker: &[u8]| text.windows(marker.len()).any(|w| w == marker);
    // A block's BEGIN line as the PEM reader takes it: at the start of a line (an
    // indented one is read as no block at all).
    let begins = |marker: &[u8]| {
        text.windows(marker.len())
            .enumerate()
            .any(|(i, w)| w == marker && (i == 0 || text[i - 1] == b'\n'))
    };
    let parameter = parameter.to_owned();
    match holds {
        Holds::Cas | Holds::Certificate if !begins(b"-----BEGIN CERTIFICATE-----") => {
            Err(TlsParameterError::NoCertificate {
                parameter,
                given,
                consequence: if holds == Holds::Cas {
                    "no CA of the server would be trusted"
                } else {
                    "the client certificate goes there"
                },
            })
        }
        Holds::Key
            if has(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || has(b"Proc-Type: 4,ENCRYPTED") =>
        {
            Err(TlsParameterError::EncryptedKey { parameter, given })
        }
        Holds::Key
            if ![
                &b"-----BEGIN PRIVATE KEY-----"[..],
                b"-----BEGIN RSA PRIVATE KEY-----",
                b"-----BEGIN EC PRIVATE KEY-----",
            ]
            .into_iter()
            .any(begins) =>
        {
            Err(TlsParameterError::NoKey { parameter, given })
        }
        _ => Ok(()),
    }
}

/// The `sslmode` of a connection that reaches its server over the network without
/// verifying it (every mode but `verify-full`, `verify-ca` included: see the module's
/// comment), its host without brackets (as `db` leaves it): `None` for a Unix socket
/// or a loopback address, where no other machine sits in between.
pub fn unverified_off_host(options: &PgConnectOptions) -> Option<&'static str> {
    let host = options.get_host();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
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

    /// Writes a file only its owner may read, as a key file must be.
    fn write_private(
        path: impl AsRef<std::path::Path>,
        text: impl AsRef<[u8]>,
    ) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
    }

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
    fn parameters_sqlx_would_log_or_misread_are_refused_or_left_out_by_name() {
        for url in [
            "postgres://kl@db/kl?sslmode=verify-full&sslpassword=s3cret",
            "postgres://kl@db/kl?Password=s3cret",
            "postgres://kl@db/kl?pgpassword=s3cret",
        ] {
            let refused = prepare(url).unwrap_err().to_string();
            assert!(refused.starts_with("the parameter "), "{refused}");
            assert!(!refused.contains("s3cret"), "{refused}");
            // Nor the URL shown beside it.
            assert!(
                !crate::db::without_password(url).contains("s3cret"),
                "{url}"
            );
        }
        let inline = "postgres://kl@db/kl?sslkey=-----BEGIN%20PRIVATE%20KEY-----%0AMIIs3cret";
        assert_eq!(
            prepare(inline).unwrap_err().to_string(),
            "sslkey holds a PEM document where a file's path goes (a URL's parameters always \
             take a path; a PGSSL… variable takes the PEM only as its whole value): put it in \
             a file readable only by keyledger's user"
        );
        assert!(!crate::db::without_password(inline).contains("s3cret"));
        let after_text = "postgres://kl@db/kl?sslkey=Bag%20Attributes%0A-----BEGIN%20PRIVATE%20KEY-----%0As3cret";
        assert!(
            prepare(after_text)
                .unwrap_err()
                .to_string()
                .starts_with("sslkey holds a PEM document")
        );
        assert!(!crate::db::without_password(after_text).contains("s3cret"));
        // A parameter sqlx does not read is shown without its value: it may be a
        // password under another name.
        assert_eq!(
            crate::db::without_password("postgres://kl@db/kl?passwd=s3cret&sslmode=require"),
            "postgres://kl@db/kl?passwd=***&sslmode=require"
        );

        let dir = tempfile::tempdir().unwrap();
        let refused = |query: String| {
            prepare(&format!("postgres://kl@db/kl?sslmode=verify-full&{query}"))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused("sslrootcert=/nonexistent/ca.pem".into()),
            "sslrootcert names /nonexistent/ca.pem, which cannot be read (No such file or \
             directory (os error 2))"
        );
        let d = dir.path().display();
        assert_eq!(
            refused(format!("ssl-key={d}")),
            format!("ssl-key names {d}, which cannot be read (not a file)")
        );
        let empty = dir.path().join("empty.pem");
        write_private(&empty, "").unwrap();
        assert!(
            refused(format!("ssl-ca={}", empty.display())).contains("holds no certificate"),
            "a file of CAs with none would trust only the system's roots"
        );

        // A client certificate or key file that holds something else is named, and
        // nothing of it is shown.
        let cert_as_key = dir.path().join("client.crt");
        write_private(&cert_as_key, "-----BEGIN CERTIFICATE-----\ns3cret\n").unwrap();
        let message = refused(format!("sslkey={}", cert_as_key.display()));
        assert_eq!(
            message,
            format!(
                "sslkey names {}, which holds no private key (a PEM \"-----BEGIN PRIVATE \
                 KEY-----\" block, or an RSA or EC one, its lines unindented): the client \
                 certificate's key goes there",
                cert_as_key.display()
            )
        );
        let key_as_cert = dir.path().join("client.key");
        write_private(&key_as_cert, "-----BEGIN PRIVATE KEY-----\ns3cret\n").unwrap();
        let message = refused(format!("sslcert={}", key_as_cert.display()));
        assert!(
            message.ends_with("the client certificate goes there"),
            "{message}"
        );
        assert!(!message.contains("s3cret"), "{message}");
        let encrypted = dir.path().join("encrypted.key");
        write_private(
            &encrypted,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\ns3cret\n",
        )
        .unwrap();
        let message = refused(format!("ssl-key={}", encrypted.display()));
        assert!(
            message.contains("which holds an encrypted key"),
            "{message}"
        );
        assert!(message.contains("openssl pkey -in"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        // A file parameter given twice, or under two names: sqlx reads the last.
        let good = dir.path().join("good.key");
        write_private(&good, "-----BEGIN PRIVATE KEY-----\n").unwrap();
        for twice in [
            format!("sslkey={0}&sslkey={0}", good.display()),
            format!("sslkey={0}&ssl-key={0}", good.display()),
            "sslmode=require&sslmode=disable".to_owned(),
        ] {
            let message = refused(twice.clone());
            assert!(
                message.contains("is given more than once"),
                "{twice}: {message}"
            );
        }
        // A PKCS#1 key encrypted the traditional way, with its header lines.
        let legacy = dir.path().join("legacy.key");
        write_private(
            &legacy,
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: \
             AES-128-CBC,00\n\ns3cret\n",
        )
        .unwrap();
        let message = refused(format!("sslkey={}", legacy.display()));
        assert!(
            message.contains("which holds an encrypted key"),
            "{message}"
        );
        // `openssl ecparam -genkey` writes its parameters before the key.
        let ec = dir.path().join("ec.key");
        write_private(
            &ec,
            "-----BEGIN EC PARAMETERS-----\nBggq\n-----END EC PARAMETERS-----\n\
             -----BEGIN EC PRIVATE KEY-----\n",
        )
        .unwrap();
        let url = format!("postgres://kl@db/kl?sslkey={}", ec.display());
        assert_eq!(prepare(&url).unwrap(), url);
        for header in ["RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY"] {
            let key = dir.path().join("ok.key");
            write_private(&key, format!("-----BEGIN {header}-----\n")).unwrap();
            let url = format!("postgres://kl@db/kl?sslkey={}", key.display());
            assert_eq!(prepare(&url).unwrap(), url, "{header}");
        }

        let ca = dir.path().join("ca.pem");
        write_private(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let url = format!(
            "postgres://kl@db/kl?password=p&sslmode=verify-full&sslrootcert={}",
            ca.display()
        );
        assert_eq!(prepare(&url).unwrap(), url);
        // A parameter sqlx does not read is left out (sqlx would log its value).
        let typo = format!("{url}&passwd_typo_no=1&connect_timeout=5&options[x]=y");
        let prepared = prepare(&typo).unwrap();
        assert!(!prepared.contains("connect_timeout"), "{prepared}");
        assert!(!prepared.contains("passwd_typo_no"), "{prepared}");
        assert!(prepared.contains("options%5Bx%5D=y"), "{prepared}");
    }

    #[test]
    fn a_key_others_may_read_or_given_inline_is_checked_as_libpq_would() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("client.key");
        write_private(&key, "-----BEGIN PRIVATE KEY-----\ns3cret\n").unwrap();
        let cert = dir.path().join("client.pem");
        write_private(&cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
        // The URL names every setting the check depends on: the environment's are
        // overruled.
        let url = format!(
            "postgres://kl@db/kl?sslmode=require&sslcert={}&sslkey={}",
            cert.display(),
            key.display()
        );
        assert_eq!(prepare(&url).unwrap(), url);
        for mode in [0o640, 0o604, 0o644, 0o660] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            let message = prepare(&url).unwrap_err().to_string();
            assert_eq!(
                message,
                format!(
                    "sslkey names {}, which others may read (mode {mode:o}): a private key \
                     must be readable only by its owner: `chmod 600` it; libpq refuses it too",
                    key.display()
                )
            );
        }
        // Only a key libpq loads, with a certificate over TLS, is held to its rule.
        let pairs = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let none = |_: &str| None;
        let cert_in_env = |v: &str| (v == "PGSSLCERT").then(|| "/c.pem".to_owned());
        let disabled_in_env = |v: &str| (v == "PGSSLMODE").then(|| "Disable".to_owned());
        assert!(loads_client_key(&pairs(&[("sslcert", "/c.pem")]), none));
        assert!(loads_client_key(
            &pairs(&[("sslkey", "/k.pem")]),
            cert_in_env
        ));
        assert!(!loads_client_key(&pairs(&[("sslkey", "/k.pem")]), none));
        assert!(!loads_client_key(&pairs(&[("sslcert", "")]), none));
        assert!(!loads_client_key(
            &pairs(&[("sslcert", "/c.pem"), ("ssl-mode", "disable")]),
            none
        ));
        assert!(!loads_client_key(
            &pairs(&[("sslcert", "/c.pem")]),
            disabled_in_env
        ));
        assert!(loads_client_key(
            &pairs(&[("sslcert", "/c.pem"), ("sslmode", "require")]),
            disabled_in_env
        ));
        let unused = url.replace("sslmode=require", "sslmode=disable");
        assert_eq!(prepare(&unused).unwrap(), unused);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(prepare(&url).unwrap(), url);

        // A PGSSL… variable's own PEM text is checked as a file's content is, and none
        // of it is shown.
        let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\ns3cret\n";
        assert_eq!(
            check_content("PGSSLKEY", Given::Value, encrypted.as_bytes(), Holds::Key)
                .unwrap_err()
                .to_string(),
            "PGSSLKEY is PEM text that holds an encrypted key: keyledger's PostgreSQL client \
             reads only unencrypted ones; write one with `openssl pkey -in <its file> -out \
             <new file>` and make it readable only by keyledger's user"
        );
        let certificate = "-----BEGIN CERTIFICATE-----\ns3cret\n";
        let message = check_content("PGSSLKEY", Given::Value, certificate.as_bytes(), Holds::Key)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("PGSSLKEY is PEM text that holds no private key"),
            "{message}"
        );
        assert!(!message.contains("s3cret"), "{message}");
        assert!(
            check_content(
                "PGSSLCERT",
                Given::Value,
                certificate.as_bytes(),
                Holds::Certificate
            )
            .is_ok()
        );
        // What sqlx takes for the PEM itself, and what it reads as a path.
        assert!(is_inline_pem(
            "\n-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n"
        ));
        assert!(!is_inline_pem("-----BEGIN PRIVATE KEY-----\nAA\n"));
        // sqlx takes an indented block for the PEM itself, and its reader then finds
        // no block in it.
        let indented = "  -----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----";
        assert!(is_inline_pem(indented));
        let message = check_content("PGSSLKEY", Given::Value, indented.as_bytes(), Holds::Key)
            .unwrap_err()
            .to_string();
        assert!(message.contains("its lines unindented"), "{message}");
    }
}
