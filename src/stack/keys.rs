//! The keys a node reads from files: the commit key, the KEK, token keys, the
//! checkpoint key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use commands::log::checkpoints::CheckpointSettings;
use domain::commit::CommitKey;
use infra::envelope::{Envelope, KEK_FILE};
use infra::identity::{self, IdentityProvider, Issuer, TOKEN_KEY_FILE, TrustConfig, Verifier};
use infra::kek::{Pkcs11Settings, Pkcs11Source};
use infra::keyfile::COMMIT_KEY_FILE;

/// Which tokens a node accepts.
#[derive(Debug, Clone, Default)]
pub struct IdentitySettings {
    /// The identity provider's keys, issuer and audience, if one is trusted.
    pub trust: TrustConfig,
    /// Whether development (HS256) tokens are accepted; by default they are unless an
    /// identity provider is configured.
    pub dev_tokens: Option<bool>,
}

impl IdentitySettings {
    /// Whether development tokens are accepted.
    pub fn dev_tokens(&self) -> bool {
        self.dev_tokens.unwrap_or(!self.trust.is_configured())
    }
}

/// Where a node's key files are; `None` means the default name in the data directory.
#[derive(Debug, Clone, Default)]
pub struct KeyFiles {
    /// The KEK (`kek.key`; later versions beside it, `kek.key.1`, ...).
    pub kek: Option<PathBuf>,
    /// The development token key (`token-hs256.key`).
    pub token: Option<PathBuf>,
    /// The commit key (`commit.key`).
    pub commit: Option<PathBuf>,
    /// Whether a missing commit key may be created: only by the component that writes
    /// the log. A reader with a key of its own would take every commit for foreign.
    pub create_commit_key: bool,
    /// The KEK in an HSM instead of the `kek` file.
    pub kek_pkcs11: Option<Pkcs11Settings>,
}

/// The commit key of a node: the given file, or `commit.key` in `data_dir`; created on
/// first use if `create` (the command service), else it must exist.
pub fn commit_key(data_dir: &Path, file: Option<&Path>, create: bool) -> Result<CommitKey> {
    let path = file.map_or_else(|| data_dir.join(COMMIT_KEY_FILE), Path::to_owned);
    if create {
        return Ok(infra::keyfile::commit_key(&path)?);
    }
    if !path.exists() {
        anyhow::bail!(
            "the commit key {} does not exist: every component needs the commit key the command \
             service made (commit.key in its data directory); copy it here, or pass \
             --commit-key-file",
            path.display()
        );
    }
    Ok(infra::keyfile::existing_commit_key(&path)?)
}

/// The keys a node uses, from files (created 0600 on first use in development).
#[derive(Clone)]
pub struct Keys {
    /// Seals and opens payloads (the KEK).
    pub envelope: Arc<Envelope>,
    /// Signs development tokens.
    pub issuer: Issuer,
    /// Verifies tokens.
    pub verifier: Verifier,
    /// Authenticates commits.
    pub commit: Arc<CommitKey>,
}

impl Keys {
    /// Loads the KEK, the token key and the commit key, creating them if absent: from
    /// the given files, or by default `kek.key`, `token-hs256.key` and `commit.key` in
    /// `data_dir`; and the identity provider's keys, if `identity` names any.
    pub fn load_or_create(
        data_dir: &Path,
        files: &KeyFiles,
        identity: &IdentitySettings,
    ) -> Result<Self> {
        let kek = files.kek.clone().unwrap_or_else(|| data_dir.join(KEK_FILE));
        let token = files
            .token
            .clone()
            .unwrap_or_else(|| data_dir.join(TOKEN_KEY_FILE));
        let envelope = Arc::new(match &files.kek_pkcs11 {
            Some(settings) => {
                let token = Pkcs11Source::open(settings)
                    .map_err(|e| anyhow::anyhow!("the KEK in the HSM: {e}"))?;
                Envelope::from_source(Box::new(token))?
            }
            None => Envelope::load_or_create(&kek)?,
        });
        let commit = Arc::new(commit_key(
            data_dir,
            files.commit.as_deref(),
            files.create_commit_key,
        )?);
        let (issuer, verifier) = token_keys(&token, identity)?;
        Ok(Self {
            envelope,
            issuer,
            verifier,
            commit,
        })
    }
}

/// The development token issuer (key file `token`, created on first use) and the
/// verifier of the tokens `identity` accepts.
pub fn token_keys(token: &Path, identity: &IdentitySettings) -> Result<(Issuer, Verifier)> {
    let (issuer, mut verifier) = identity::dev_keys(token)?;
    if identity.trust.is_configured() {
        verifier = verifier.trust(IdentityProvider::load(&identity.trust)?);
    }
    if !identity.dev_tokens() {
        verifier = verifier.without_dev_tokens();
    }
    Ok((issuer, verifier))
}

/// The checkpoint key file inside a data directory.
pub const CHECKPOINT_KEY_FILE: &str = "checkpoint.key";

/// Checkpoints signed with `<data_dir>/checkpoint.key`, named `keyledger/<stream>`,
/// every 10 s.
pub fn default_checkpoints(data_dir: &Path, stream: &str) -> CheckpointSettings {
    CheckpointSettings {
        key_file: data_dir.join(CHECKPOINT_KEY_FILE),
        name: format!("keyledger/{stream}"),
        interval: Duration::from_secs(10),
    }
}
