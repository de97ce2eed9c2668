//! Envelope encryption: a fresh 256-bit data key (DEK) per payload version seals the
//! payload with AES-256-GCM; the DEK is wrapped by the key-encryption key (KEK, a key
//! file or an HSM: [`crate::kek`]), which lives outside NATS. Only the wrapped DEK
//! leaves this module, and only to the key store, never to the log.

use std::path::Path;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Nonce, Payload};
use base64::engine::general_purpose::STANDARD as B64;
use domain::ids::{KeyId, ProjectId, SecretId, VersionId};
use domain::secret::payload::{Plaintext, SealedPayload, payload_aad};
use secrecy::SecretSlice;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::kek::{FileKek, Kek, KekError, NONCE_LEN};
use crate::keyfile::{self, KeyFileError};

/// File name of the development KEK inside the data directory.
pub const KEK_FILE: &str = "kek.key";

const KEY_LEN: usize = 32;

/// Why sealing or opening failed. Never carries key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The DEK was wrapped by another KEK than the one loaded.
    #[error(
        "data key was wrapped by KEK {wrapped_by}, but KEK {loaded} is loaded: start keyledger \
         with the KEK file it was created with; if that is the one loaded, the key store entry \
         was tampered with (restore it from a backup)"
    )]
    WrongKek {
        /// The KEK id recorded with the wrapped key.
        wrapped_by: String,
        /// The loaded KEK's id.
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

/// Seals and opens payloads under one KEK.
pub struct Envelope {
    kek: Box<dyn Kek>,
    fingerprint_key: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Envelope(kek {})", self.kek.id())
    }
}

impl Envelope {
    /// An envelope over a 32-byte KEK held in this process.
    pub fn new(kek: &[u8; KEY_LEN]) -> Self {
        let kek = FileKek::new(kek);
        let fingerprint_key = kek
            .fingerprint_key()
            .unwrap_or_else(|_| unreachable!("a file KEK's fingerprint key is derived in memory"));
        Self {
            kek: Box::new(kek),
            fingerprint_key,
        }
    }

    /// An envelope over `kek`, wherever it is held.
    pub fn with_kek(kek: Box<dyn Kek>) -> Result<Self, CryptoError> {
        let fingerprint_key = kek
            .fingerprint_key()
            .map_err(|e| CryptoError::Kek(e.to_string()))?;
        Ok(Self {
            kek,
            fingerprint_key,
        })
    }

    /// The KEK's id.
    pub fn kek_id(&self) -> &str {
        self.kek.id()
    }

    /// The fingerprint of version `version` of `secret` holding `plaintext`: HMAC-SHA256
    /// under a key derived from the KEK, over the version's identity, media type and
    /// bytes. Equal fingerprints mean the same payload was sent for the same version.
    pub fn fingerprint(
        &self,
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
            &self.fingerprint_key[..],
            &[who.as_bytes(), plaintext.expose()],
        ))
    }

    /// Loads the KEK file at `path`, creating a fresh one (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyFileError> {
        Self::from_file_bytes(keyfile::load_or_create(path, KEY_LEN)?)
    }

    /// Loads an existing KEK file.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        Self::from_file_bytes(keyfile::load(path, KEY_LEN)?)
    }

    fn from_file_bytes(bytes: Zeroizing<Vec<u8>>) -> Result<Self, KeyFileError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&bytes);
        Ok(Self::new(&key))
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

        let mut wrap_nonce = [0u8; NONCE_LEN];
        keyfile::random_bytes(&mut wrap_nonce);
        let wrapped = self
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
                kek_id: self.kek.id().to_owned(),
                nonce: wrap_nonce.to_vec(),
                wrapped,
                fingerprint: Some(self.fingerprint(plaintext, project, secret, version_id)),
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
        if wrapped.kek_id != self.kek.id() {
            return Err(CryptoError::WrongKek {
                wrapped_by: wrapped.kek_id.clone(),
                loaded: self.kek.id().to_owned(),
            });
        }
        let dek = self
            .kek
            .open(
                &wrapped.nonce,
                &wrapped.wrapped,
                &dek_aad(project, secret, sealed.key_id),
            )
            .map_err(|e| match e {
                KekError::Unwrap => CryptoError::Unwrap(sealed.key_id),
                KekError::Provider(p) => CryptoError::Kek(p),
            })?;
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
