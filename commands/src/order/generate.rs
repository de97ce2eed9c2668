//! Key generation for orders: symmetric keys from the OS's random source, RSA key
//! pairs with the `rsa` crate, EC key pairs (P-256, P-384) with `rcgen`/ring.

use domain::order::KeySpec;
use rcgen::KeyPair;
use zeroize::Zeroizing;

/// `bytes` random bytes of key material.
pub fn symmetric(bytes: usize) -> Zeroizing<Vec<u8>> {
    let mut key = Zeroizing::new(vec![0u8; bytes]);
    infra::keyfile::random_bytes(&mut key);
    key
}

/// A fresh key pair. RSA generation takes a moment (seconds for 4096 bits).
pub fn key_pair(spec: KeySpec) -> Result<KeyPair, KeyGenError> {
    match spec {
        KeySpec::Rsa(bits) => {
            use rsa::pkcs8::{EncodePrivateKey, LineEnding};
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits as usize)
                .map_err(|e| KeyGenError::Rsa(bits, e.to_string()))?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| KeyGenError::Encode(e.to_string()))?;
            KeyPair::from_pem(&pem).map_err(|e| KeyGenError::Load(e.to_string()))
        }
        KeySpec::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| KeyGenError::Ec("P-256", e.to_string())),
        KeySpec::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
            .map_err(|e| KeyGenError::Ec("P-384", e.to_string())),
    }
}

/// Why a key pair could not be made. The causes are the libraries' own words; none
/// holds key material.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyGenError {
    /// RSA generation failed.
    #[error("generating an RSA {0} key failed: {1}")]
    Rsa(u32, String),
    /// The RSA key could not be encoded as PKCS#8.
    #[error("encoding the RSA key failed: {0}")]
    Encode(String),
    /// The encoded RSA key could not be loaded for signing.
    #[error("loading the RSA key failed: {0}")]
    Load(String),
    /// EC generation failed.
    #[error("generating a {0} key failed: {1}")]
    Ec(&'static str, String),
}
