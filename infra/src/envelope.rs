//! Envelope encryption: a fresh 256-bit data key (DEK) per payload version seals the
//! payload with AES-256-GCM; the DEK is wrapped by the key-encryption key (KEK, a key
//! file or an HSM: [`crate::kek`]), which lives outside NATS. Only the wrapped DEK
//! leaves this module, and only to the key store, never to the log.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Nonce, Payload};
use base64::engine::general_purpose::STANDARD as B64;
use domain::ids::{KeyId, ProjectId, SecretId, VersionId};
use domain::secret::payload::{Plaintext, SealedPayload, payload_aad};
use secrecy::SecretSlice;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::kek::{FileKek, FileSource, Kek, KekError, KekSource, KekVersion, NONCE_LEN};
use crate::keyfile;

/// File name of the development KEK inside the data directory.
pub const KEK_FILE: &str = "kek.key";

const KEY_LEN: usize = 32;

/// Why sealing or opening failed. Never carries key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The DEK was wrapped by a KEK this node does not hold.
    #[error(
        "data key was wrapped by KEK {wrapped_by}, but this node holds only KEK {loaded}: start \
         keyledger with the KEK it was created with (a KEK retired while a key still named it, \
         or a key file of another deployment); if it holds that KEK, the key store entry was \
         tampered with (restore it from a backup)"
    )]
    WrongKek {
        /// The KEK id recorded with the wrapped key.
        wrapped_by: String,
        /// The ids of the KEKs held.
        loaded: String,
    },
    /// The wrapped DEK did not authenticate under its binding (AAD): the key store entry
    /// was tampered with.
    #[error(
        "data key {0} does not open under its binding to this secret: its key store entry was \
         tampered with (altered, overwritten, or moved from another secret); restore the key \
         store from a backup"
    )]
    Unwrap(KeyId),
    /// The ciphertext did not authenticate: altered, or moved from another secret.
    #[error("payload does not decrypt (altered, or moved from another secret or version)")]
    Open,
    /// Encryption itself failed (only for absurd sizes).
    #[error("payload could not be encrypted")]
    Seal,
    /// The KEK's provider failed (an HSM error): nothing is wrong with the data.
    #[error("{0}; retry once the KEK's provider works again")]
    Kek(String),
}

/// A DEK wrapped by the KEK: what the key store holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// Which KEK wrapped it.
    pub kek_id: String,
    /// GCM nonce of the wrapping.
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// The DEK, encrypted and authenticated by the KEK.
    #[serde(with = "b64")]
    pub wrapped: Vec<u8>,
    /// A keyed fingerprint of the payload (see [`Envelope::fingerprint`]), so a retried
    /// write can be told apart from a different one without decrypting. It lives here,
    /// next to the key, so destroying the key destroys it too: nobody can test guesses
    /// of a shredded payload against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The KEK whose fingerprint key made `fingerprint`, once a re-wrap moved the key
    /// to another KEK; absent while it is `kek_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint_kek: Option<String>,
}

mod b64 {
    use super::B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        B64.decode(String::deserialize(d)?)
            .map_err(serde::de::Error::custom)
    }
}

/// HMAC-SHA256 of `parts` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn cipher(key: &[u8; KEY_LEN]) -> Aes256Gcm {
    Aes256Gcm::new(&(*key).into())
}

fn random_nonce() -> Nonce<Aes256Gcm> {
    let mut n = [0u8; NONCE_LEN];
    keyfile::random_bytes(&mut n);
    n.into()
}

fn dek_aad(project: &ProjectId, secret: SecretId, key: KeyId) -> Vec<u8> {
    format!("keyledger/dek/v1\0{project}\0{secret}\0{key}").into_bytes()
}

fn fingerprint_under(
    held: &Held,
    plaintext: &Plaintext,
    project: &ProjectId,
    secret: SecretId,
    version: VersionId,
) -> String {
    let who = format!(
        "keyledger/fingerprint/v1\0{project}\0{secret}\0{version}\0{}\0",
        plaintext.content_type()
    );
    hex::encode(hmac_sha256(
        &held.fingerprint_key[..],
        &[who.as_bytes(), plaintext.expose()],
    ))
}

/// One KEK version an envelope holds, with the key its fingerprints are made with.
struct Held {
    version: KekVersion,
    kek: Arc<dyn Kek>,
    fingerprint_key: Zeroizing<[u8; KEY_LEN]>,
}

impl Held {
    fn new(version: KekVersion, kek: Box<dyn Kek>) -> Result<Self, CryptoError> {
        let fingerprint_key = kek
            .fingerprint_key()
            .map_err(|e| CryptoError::Kek(e.to_string()))?;
        Ok(Self {
            version,
            kek: Arc::from(kek),
            fingerprint_key,
        })
    }
}

/// The KEK versions held, and which one wraps new data keys.
struct Keyring {
    held: Vec<Arc<Held>>,
    current: Arc<Held>,
    /// Set while the deployment's current KEK is one this node cannot wrap with: new
    /// data keys are then refused (never wrapped by an older version, which a
    /// retirement would take away), and the version is looked for again now and then.
    wanted: Option<Wanted>,
}

/// The current KEK this node does not have.
enum Wanted {
    /// A version it does not hold (yet): looked for again at most once a second.
    Version {
        version: KekVersion,
        kek_id: String,
        tried: std::time::Instant,
    },
    /// The deployment's current-KEK entry cannot be read (malformed).
    Unknown(String),
}

/// How often a node that lacks the current KEK looks for it again.
const LOOK_AGAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Seals payloads under the current KEK and opens them under whichever KEK version
/// wrapped their data key: during a KEK rotation both are held, so reads never fail
/// while keys are re-wrapped.
pub struct Envelope {
    ring: RwLock<Keyring>,
    /// Where more versions come from; `None` for an envelope over one fixed KEK.
    source: Option<Box<dyn KekSource>>,
    /// Whether opening the source made version 0 (it held none).
    made: bool,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Envelope(kek {})", self.kek_id())
    }
}

/// The fingerprints of one payload under every KEK version held (see
/// [`Envelope::fingerprints`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprints(BTreeMap<String, String>);

impl Fingerprints {
    /// Whether `stored` was made for the same payload: its fingerprint equals this
    /// payload's under the KEK that made it. `None` when that KEK is not held (it was
    /// retired): nothing can tell any more.
    pub fn compare(&self, stored: &WrappedKey) -> Option<bool> {
        let Some(fingerprint) = &stored.fingerprint else {
            return Some(false);
        };
        self.0
            .get(stored.fingerprinted_by())
            .map(|f| f == fingerprint)
    }
}

impl WrappedKey {
    /// The id of the KEK whose fingerprint key made [`WrappedKey::fingerprint`]: the
    /// one that first wrapped the key, which a re-wrap records.
    pub fn fingerprinted_by(&self) -> &str {
        self.fingerprint_kek.as_deref().unwrap_or(&self.kek_id)
    }
}

impl Envelope {
    /// An envelope over a 32-byte KEK held in this process.
    pub fn new(kek: &[u8; KEY_LEN]) -> Self {
        Self::with_kek(Box::new(FileKek::new(kek)))
            .unwrap_or_else(|_| unreachable!("a file KEK's fingerprint key is derived in memory"))
    }

    /// An envelope over `kek`, wherever it is held, as version 0 and nothing else.
    pub fn with_kek(kek: Box<dyn Kek>) -> Result<Self, CryptoError> {
        let held = Arc::new(Held::new(0, kek)?);
        Ok(Self {
            ring: RwLock::new(Keyring {
                held: vec![held.clone()],
                current: held,
                wanted: None,
            }),
            source: None,
            made: false,
        })
    }

    /// An envelope over every KEK version `source` holds, the oldest current until
    /// [`Envelope::use_version`] says otherwise (before any rotation, that is version
    /// 0; a version made but not yet made current, staged, is never used by itself).
    /// With no version at all, version 0 is made (first use).
    pub fn from_source(source: Box<dyn KekSource>) -> Result<Self, CryptoError> {
        let kek = |e: KekError| CryptoError::Kek(e.to_string());
        let mut held = Vec::new();
        for version in source.versions().map_err(kek)? {
            if let Some(k) = source.load(version).map_err(kek)? {
                held.push(Arc::new(Held::new(version, k)?));
            }
        }
        let made = held.is_empty();
        if made {
            held.push(Arc::new(Held::new(0, source.create(0).map_err(kek)?)?));
        }
        let current = held
            .first()
            .cloned()
            .unwrap_or_else(|| unreachable!("one version was just made"));
        Ok(Self {
            ring: RwLock::new(Keyring {
                held,
                current,
                wanted: None,
            }),
            source: Some(source),
            made,
        })
    }

    /// The KEK files beside `path` (`path` itself is version 0), version 0 created
    /// (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        Self::from_source(Box::new(FileSource::new(path)))
    }

    fn ring(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        // The ring is replaced whole under the lock; a panic elsewhere leaves it valid.
        self.ring.read().unwrap_or_else(|e| e.into_inner())
    }

    fn current(&self) -> Arc<Held> {
        self.ring().current.clone()
    }

    /// The current KEK's id.
    pub fn kek_id(&self) -> String {
        self.current().kek.id().to_owned()
    }

    /// The current KEK's version.
    pub fn current_version(&self) -> KekVersion {
        self.current().version
    }

    /// Whether this node wraps new data keys at all (it holds the current KEK).
    pub fn seals(&self) -> bool {
        self.ring().wanted.is_none()
    }

    /// Whether new data keys are wrapped by version `version` with id `kek_id`.
    pub fn wraps_with(&self, version: KekVersion, kek_id: &str) -> bool {
        let ring = self.ring();
        ring.wanted.is_none() && ring.current.version == version && ring.current.kek.id() == kek_id
    }

    /// The versions held and their KEK ids, ascending.
    pub fn versions(&self) -> Vec<(KekVersion, String)> {
        self.ring()
            .held
            .iter()
            .map(|h| (h.version, h.kek.id().to_owned()))
            .collect()
    }

    /// Whether opening the source made its first KEK, the source holding none: a new
    /// deployment's first start, or a node pointed at the wrong file or HSM label.
    pub fn made_on_open(&self) -> bool {
        self.made
    }

    /// Destroys the KEK opening the source made ([`Envelope::made_on_open`]), before
    /// it wrapped anything: a node that turned out not to be the deployment's leaves
    /// no stray KEK behind (a file, or a key in the HSM under a mistyped label).
    pub fn take_back_made(&self) -> Result<(), CryptoError> {
        match &self.source {
            Some(source) if self.made => source
                .retire(0)
                .map_err(|e| CryptoError::Kek(e.to_string())),
            _ => Ok(()),
        }
    }

    /// Where versions come from, for rotation and retirement.
    pub fn source(&self) -> Option<&dyn KekSource> {
        self.source.as_deref()
    }

    /// Loads the versions the source gained since (another process rotated).
    pub fn refresh(&self) -> Result<(), CryptoError> {
        let Some(source) = &self.source else {
            return Ok(());
        };
        let kek = |e: KekError| CryptoError::Kek(e.to_string());
        let have: Vec<KekVersion> = self.ring().held.iter().map(|h| h.version).collect();
        let mut more = Vec::new();
        for version in source.versions().map_err(kek)? {
            if have.contains(&version) {
                continue;
            }
            if let Some(k) = source.load(version).map_err(kek)? {
                more.push(Arc::new(Held::new(version, k)?));
            }
        }
        if !more.is_empty() {
            let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
            ring.held.extend(more);
            ring.held.sort_by_key(|h| h.version);
            ring.held.dedup_by_key(|h| h.version);
        }
        Ok(())
    }

    /// Makes version `version` (whose KEK id is `kek_id`) the one new data keys are
    /// wrapped with, loading it first if it is new. If this node does not hold it, or
    /// holds another key under its name, new data keys are refused until it does.
    pub fn use_version(&self, version: KekVersion, kek_id: &str) -> Result<(), CryptoError> {
        let found = self.find_version(version, kek_id);
        let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
        match found {
            Ok(held) => {
                ring.current = held;
                ring.wanted = None;
                Ok(())
            }
            Err(e) => {
                ring.wanted = Some(Wanted::Version {
                    version,
                    kek_id: kek_id.to_owned(),
                    tried: std::time::Instant::now(),
                });
                Err(e)
            }
        }
    }

    /// Refuses new data keys: the deployment's current KEK cannot be known (`why`).
    pub fn refuse_sealing(&self, why: String) {
        self.ring.write().unwrap_or_else(|e| e.into_inner()).wanted = Some(Wanted::Unknown(why));
    }

    /// Version `version` with id `kek_id`, loaded if new.
    fn find_version(&self, version: KekVersion, kek_id: &str) -> Result<Arc<Held>, CryptoError> {
        let find = |ring: &Keyring| ring.held.iter().find(|h| h.version == version).cloned();
        // Bound first, so that the read lock is released before a refresh writes.
        let found = find(&self.ring());
        let held = match found {
            Some(h) => h,
            None => {
                self.refresh()?;
                find(&self.ring()).ok_or_else(|| {
                    CryptoError::Kek(format!(
                        "KEK version {version} is current, but this node does not hold it ({}); \
                         give it that KEK: new data keys are refused until then",
                        self.source
                            .as_ref()
                            .map_or_else(|| "a single fixed KEK".to_owned(), |s| s.name(version))
                    ))
                })?
            }
        };
        if held.kek.id() != kek_id {
            return Err(CryptoError::Kek(format!(
                "KEK version {version} is {kek_id}, but this node holds another key under its \
                 name ({}); give it the deployment's KEK: new data keys are refused until then",
                held.kek.id()
            )));
        }
        Ok(held)
    }

    /// The KEK new data keys are wrapped with; refused while this node lacks the
    /// deployment's current one.
    fn sealing(&self) -> Result<Arc<Held>, CryptoError> {
        let (version, kek_id) = {
            let ring = self.ring();
            match &ring.wanted {
                None => return Ok(ring.current.clone()),
                Some(Wanted::Unknown(why)) => return Err(CryptoError::Kek(why.clone())),
                Some(Wanted::Version {
                    version,
                    kek_id,
                    tried,
                }) => {
                    if tried.elapsed() < LOOK_AGAIN {
                        return Err(CryptoError::Kek(format!(
                            "KEK version {version} is current, but this node does not hold it: \
                             give it that KEK; new data keys are refused until then"
                        )));
                    }
                    (*version, kek_id.clone())
                }
            }
        };
        self.use_version(version, &kek_id)?;
        tracing::info!(version, kek = %kek_id, "new data keys are now wrapped by this KEK");
        Ok(self.current())
    }

    /// The held KEK with id `id`, looking for new versions once if none is.
    fn by_id(&self, id: &str) -> Option<Arc<Held>> {
        let find = |ring: &Keyring| ring.held.iter().find(|h| h.kek.id() == id).cloned();
        let found = find(&self.ring());
        if found.is_some() {
            return found;
        }
        // A version made after this node started (a rotation elsewhere): look once.
        if let Err(e) = self.refresh() {
            tracing::warn!(error = %e, "looking for new KEK versions failed");
        }
        find(&self.ring())
    }

    /// The payload's fingerprints under every KEK version held: a retried write is
    /// compared with what was stored under the KEK that stored it, also after a
    /// rotation.
    pub fn fingerprints(
        &self,
        plaintext: &Plaintext,
        project: &ProjectId,
        secret: SecretId,
        version: VersionId,
    ) -> Fingerprints {
        let held = self.ring().held.clone();
        Fingerprints(
            held.iter()
                .map(|h| {
                    (
                        h.kek.id().to_owned(),
                        fingerprint_under(h, plaintext, project, secret, version),
                    )
                })
                .collect(),
        )
    }

    /// `wrapped` (the data key `key` of `secret`) wrapped again by the current KEK
    /// under the same binding and a fresh nonce, its fingerprint kept; `None` if the
    /// current KEK wrapped it already.
    pub fn rewrap(
        &self,
        wrapped: &WrappedKey,
        project: &ProjectId,
        secret: SecretId,
        key: KeyId,
    ) -> Result<Option<WrappedKey>, CryptoError> {
        let current = self.sealing()?;
        if wrapped.kek_id == current.kek.id() {
            return Ok(None);
        }
        let aad = dek_aad(project, secret, key);
        let dek = self.unwrap_dek(wrapped, &aad, key)?;
        let mut nonce = [0u8; NONCE_LEN];
        keyfile::random_bytes(&mut nonce);
        let rewrapped = current
            .kek
            .seal(&nonce, &dek, &aad)
            .map_err(|e| CryptoError::Kek(e.to_string()))?;
        Ok(Some(WrappedKey {
            kek_id: current.kek.id().to_owned(),
            nonce: nonce.to_vec(),
            wrapped: rewrapped,
            fingerprint_kek: wrapped
                .fingerprint
                .as_ref()
                .map(|_| wrapped.fingerprinted_by().to_owned()),
            fingerprint: wrapped.fingerprint.clone(),
        }))
    }

    /// The data key `key` in `wrapped`, opened by the KEK that wrapped it.
    fn unwrap_dek(
        &self,
        wrapped: &WrappedKey,
        aad: &[u8],
        key: KeyId,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let held = self
            .by_id(&wrapped.kek_id)
            .ok_or_else(|| CryptoError::WrongKek {
                wrapped_by: wrapped.kek_id.clone(),
                loaded: self
                    .versions()
                    .into_iter()
                    .map(|(_, id)| id)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let dek = held
            .kek
            .open(&wrapped.nonce, &wrapped.wrapped, aad)
            .map_err(|e| match e {
                KekError::Unwrap => CryptoError::Unwrap(key),
                KekError::Provider(p) => CryptoError::Kek(p),
            })?;
        if dek.len() != KEY_LEN {
            return Err(CryptoError::Unwrap(key));
        }
        Ok(dek)
    }

    /// Seals `plaintext` as version `version_id` of `secret` under a fresh DEK with id
    /// `key_id`. Returns what goes into the log and the wrapped DEK for the key store.
    pub fn seal(
        &self,
        plaintext: &Plaintext,
        project: &ProjectId,
        secret: SecretId,
        version_id: VersionId,
        key_id: KeyId,
    ) -> Result<(SealedPayload, WrappedKey), CryptoError> {
        let mut dek = Zeroizing::new([0u8; KEY_LEN]);
        keyfile::random_bytes(dek.as_mut_slice());
        let cipher = cipher(&dek);

        let nonce = random_nonce();
        let aad = payload_aad(project, secret, version_id, key_id);
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.expose(),
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;

        let current = self.sealing()?;
        let mut wrap_nonce = [0u8; NONCE_LEN];
        keyfile::random_bytes(&mut wrap_nonce);
        let wrapped = current
            .kek
            .seal(
                &wrap_nonce,
                dek.as_slice(),
                &dek_aad(project, secret, key_id),
            )
            .map_err(|e| CryptoError::Kek(e.to_string()))?;

        Ok((
            SealedPayload {
                version_id,
                key_id,
                content_type: plaintext.content_type(),
                nonce: nonce.to_vec(),
                ciphertext,
            },
            WrappedKey {
                kek_id: current.kek.id().to_owned(),
                nonce: wrap_nonce.to_vec(),
                wrapped,
                fingerprint: Some(fingerprint_under(
                    &current, plaintext, project, secret, version_id,
                )),
                fingerprint_kek: None,
            },
        ))
    }

    /// Opens a sealed payload of `secret` with its wrapped DEK.
    pub fn open(
        &self,
        sealed: &SealedPayload,
        wrapped: &WrappedKey,
        project: &ProjectId,
        secret: SecretId,
    ) -> Result<SecretSlice<u8>, CryptoError> {
        let dek = self.unwrap_dek(
            wrapped,
            &dek_aad(project, secret, sealed.key_id),
            sealed.key_id,
        )?;
        let dek: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(
            dek.as_slice()
                .try_into()
                .map_err(|_| CryptoError::Unwrap(sealed.key_id))?,
        );
        let cipher = cipher(&dek);
        let nonce =
            Nonce::<Aes256Gcm>::try_from(sealed.nonce.as_slice()).map_err(|_| CryptoError::Open)?;
        let aad = payload_aad(project, secret, sealed.version_id, sealed.key_id);
        let plaintext = cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Open)?;
        Ok(SecretSlice::from(plaintext))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::secret::payload::{ContentType, PayloadLimit};
    use secrecy::ExposeSecret;
    use uuid::Uuid;

    fn ids(n: u128) -> (SecretId, VersionId, KeyId) {
        (
            SecretId::from_uuid(Uuid::from_u128(n)),
            VersionId::from_uuid(Uuid::from_u128(n + 1)),
            KeyId::from_uuid(Uuid::from_u128(n + 2)),
        )
    }

    fn text(s: &str) -> Plaintext {
        Plaintext::from_bytes(
            s.as_bytes().to_vec(),
            ContentType::TextPlain,
            PayloadLimit::default(),
        )
        .unwrap()
    }

    #[test]
    fn seal_then_open_round_trips() {
        let env = Envelope::new(&[7; 32]);
        let p = ProjectId::parse("p1").unwrap();
        let (s, v, k) = ids(1);
        let (sealed, wrapped) = env.seal(&text("beer"), &p, s, v, k).unwrap();
        assert_ne!(sealed.ciphertext[..4], *b"beer");
        let opened = env.open(&sealed, &wrapped, &p, s).unwrap();
        assert_eq!(opened.expose_secret(), b"beer");
    }

    #[test]
    fn a_ciphertext_moved_to_another_secret_or_project_does_not_open() {
        let env = Envelope::new(&[7; 32]);
        let p1 = ProjectId::parse("p1").unwrap();
        let p2 = ProjectId::parse("p2").unwrap();
        let (s, v, k) = ids(1);
        let (other, _, _) = ids(10);
        let (sealed, wrapped) = env.seal(&text("beer"), &p1, s, v, k).unwrap();
        assert_eq!(
            env.open(&sealed, &wrapped, &p1, other).unwrap_err(),
            CryptoError::Unwrap(k)
        );
        assert!(env.open(&sealed, &wrapped, &p2, s).is_err());
        let mut moved = sealed.clone();
        moved.version_id = VersionId::from_uuid(Uuid::from_u128(99));
        assert_eq!(
            env.open(&moved, &wrapped, &p1, s).unwrap_err(),
            CryptoError::Open
        );
    }

    #[test]
    fn another_kek_is_named_not_guessed() {
        let a = Envelope::new(&[7; 32]);
        let b = Envelope::new(&[8; 32]);
        let p = ProjectId::parse("p1").unwrap();
        let (s, v, k) = ids(1);
        let (sealed, wrapped) = a.seal(&text("beer"), &p, s, v, k).unwrap();
        assert!(matches!(
            b.open(&sealed, &wrapped, &p, s),
            Err(CryptoError::WrongKek { .. })
        ));
        assert_ne!(a.kek_id(), b.kek_id());
    }
}
