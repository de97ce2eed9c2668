//! A KEK read from a key file into the process: the development default.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Nonce, Payload};
use zeroize::Zeroizing;

use super::{Kek, KekError, NONCE_LEN, id_from};

/// A 32-byte AES-256-GCM key in memory.
pub struct FileKek {
    cipher: Aes256Gcm,
    id: String,
    /// Derived from the key's bytes with HMAC, as keyledger always has for file KEKs
    /// (so fingerprints stored before the KEK trait still match).
    fingerprint_key: Zeroizing<[u8; 32]>,
}

impl FileKek {
    /// The KEK `key`.
    pub fn new(key: &[u8; 32]) -> Self {
        let fingerprint_key = Zeroizing::new(crate::envelope::hmac_sha256(
            key,
            &[b"keyledger/fingerprint-key/v1"],
        ));
        let cipher = Aes256Gcm::new(&(*key).into());
        // Encrypting 16 bytes cannot exceed AES-GCM's limits.
        let zero = cipher
            .encrypt(&Nonce::<Aes256Gcm>::default(), [0u8; 16].as_slice())
            .unwrap_or_default();
        Self {
            cipher,
            id: id_from(&zero),
            fingerprint_key,
        }
    }
}

impl Kek for FileKek {
    fn id(&self) -> &str {
        &self.id
    }

    fn seal(&self, nonce: &[u8; NONCE_LEN], dek: &[u8], aad: &[u8]) -> Result<Vec<u8>, KekError> {
        self.cipher
            .encrypt(&(*nonce).into(), Payload { msg: dek, aad })
            .map_err(|_| KekError::Provider("AES-GCM refused to encrypt".into()))
    }

    fn open(
        &self,
        nonce: &[u8],
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KekError> {
        let nonce = Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| KekError::Unwrap)?;
        self.cipher
            .decrypt(&nonce, Payload { msg: wrapped, aad })
            .map(Zeroizing::new)
            .map_err(|_| KekError::Unwrap)
    }

    fn fingerprint_key(&self) -> Result<Zeroizing<[u8; 32]>, KekError> {
        Ok(self.fingerprint_key.clone())
    }
}
