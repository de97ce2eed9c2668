//! Key-encryption keys: what wraps and unwraps data keys, bound to their AAD. One
//! trait, two providers: a key file read into the process (`file.rs`, the development
//! default) and a key held in an HSM through PKCS#11 (`pkcs11.rs`), which never leaves
//! it. The envelope (`crate::envelope`) uses either the same way. A KEK has versions
//! (`source.rs`), one of them current deployment-wide (`current.rs`): rotation adds
//! one, re-wrapping moves data keys to it, retirement removes an old one.

pub mod current;
mod file;
mod pkcs11;
mod source;

pub use file::FileKek;
pub use pkcs11::{DEFAULT_KEY_LABEL, Pkcs11Kek, Pkcs11Settings, Token};
pub use source::{FileSource, KekSource, KekVersion, Pkcs11Source};

use zeroize::Zeroizing;

/// Bytes of a GCM nonce.
pub const NONCE_LEN: usize = 12;

/// Why a KEK refused to work. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KekError {
    /// The wrapped key did not authenticate under this KEK and AAD.
    #[error("the wrapped key does not open under this KEK and binding")]
    Unwrap,
    /// The provider failed (an HSM error, a lost session).
    #[error("the KEK provider failed: {0}")]
    Provider(String),
}

/// A key-encryption key. Wrapping is AES-256-GCM under a fresh random nonce with the
/// caller's AAD, so both providers produce the same format (ciphertext and tag).
pub trait Kek: Send + Sync {
    /// The KEK's id, recorded with every key it wraps: stable, revealing nothing.
    fn id(&self) -> &str;

    /// Encrypts `dek` bound to `aad` under `nonce`.
    fn seal(&self, nonce: &[u8; NONCE_LEN], dek: &[u8], aad: &[u8]) -> Result<Vec<u8>, KekError>;

    /// Decrypts what [`Kek::seal`] made with the same `nonce` and `aad`.
    fn open(
        &self,
        nonce: &[u8],
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KekError>;

    /// The key payload fingerprints are made with: derived from the KEK, so destroying
    /// the KEK makes them unverifiable too.
    fn fingerprint_key(&self) -> Result<Zeroizing<[u8; 32]>, KekError>;
}

/// A KEK's id from its encryption of a zero block under the all-zero nonce: the
/// first 8 bytes, hex. (That nonce is never used for data: data nonces are random.)
fn id_from(sealed_zero_block: &[u8]) -> String {
    hex::encode(&sealed_zero_block[..8.min(sealed_zero_block.len())])
}

/// The nonce the fingerprint key is derived under (once, with a fixed AAD); never a
/// data nonce's value in practice (those are random), and not the id's.
const FINGERPRINT_NONCE: [u8; NONCE_LEN] = [0xff; NONCE_LEN];
const FINGERPRINT_AAD: &[u8] = b"keyledger/fingerprint-key/v2";
