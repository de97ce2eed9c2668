//! HTTPS for the API: the server's certificate and key (and the client CAs of mutual
//! TLS), reloaded when their files change or on SIGHUP without dropping a
//! connection: each new connection takes the configuration current when it arrives,
//! and connections already open keep theirs.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use infra::tls::{ServerFiles, TlsError, server_config};
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How often the files are looked at for a change.
pub const POLL: Duration = Duration::from_secs(2);

/// What the files held when read: a hash of each one's bytes (a change that keeps a
/// file's size and time is still a change).
type Stamp = Vec<Option<u64>>;

/// The server's TLS configuration, swapped whole on reload.
pub struct ServerTls {
    files: ServerFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// The files as last read (successfully or not): a change is tried once, not on
    /// every poll while it stays broken.
    seen: Mutex<Stamp>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// The client certificate a connection presented and the server verified (mutual
/// TLS), as a request extension.
#[derive(Debug, Clone)]
pub struct ClientCertificate(pub Arc<CertificateDer<'static>>);

impl ServerTls {
    /// Reads `files`; fails with what is wrong with them.
    pub fn load(files: ServerFiles) -> Result<Self, TlsError> {
        let seen = stamp(&files);
        let config = server_config(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(Arc::new(config)),
            seen: Mutex::new(seen),
        })
    }

    /// The files served.
    pub fn files(&self) -> &ServerFiles {
        &self.files
    }

    /// An acceptor with the current configuration.
    pub fn acceptor(&self) -> TlsAcceptor {
        // A poisoned lock still holds a whole configuration (it is swapped whole).
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        TlsAcceptor::from(current.clone())
    }

    /// Reads the files again if they changed since last read (or always, when
    /// `force`). A configuration that fails to load leaves the current one serving.
    /// Returns whether a new one now serves.
    pub fn reload(&self, force: bool) -> Result<bool, TlsError> {
        let now = stamp(&self.files);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if !force && *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        let config = server_config(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Ok(true)
    }
}

fn stamp(files: &ServerFiles) -> Stamp {
    let mut paths: Vec<&Path> = vec![&files.cert, &files.key];
    paths.extend(files.client_ca.as_deref());
    paths
        .into_iter()
        .map(|p| {
            std::fs::read(p).ok().map(|bytes| {
                use std::hash::{Hash as _, Hasher as _};
                let mut hasher = std::hash::DefaultHasher::new();
                bytes.hash(&mut hasher);
                hasher.finish()
            })
        })
        .collect()
}

/// Reloads `tls` when its files change (looked at every [`POLL`]) and on SIGHUP,
/// until `shutdown`. A failed reload is logged and the old configuration serves on.
pub async fn watch(tls: Arc<ServerTls>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; TLS files are still reloaded when they change");
            None
        }
    };
    loop {
        let force = tokio::select! {
            () = shutdown.cancelled() => return,
            Some(()) = async {
                match hangups.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
            () = tokio::time::sleep(POLL) => false,
        };
        match tls.reload(force) {
            Ok(true) => {
                tracing::info!(cert = %tls.files.cert.display(), "TLS certificate reloaded")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "reloading the TLS certificate failed; the previous one is still served")
            }
        }
    }
}
