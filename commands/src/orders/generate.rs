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
pub fn key_pair(spec: KeySpec) -> Result<KeyPair, String> {
    match spec {
        KeySpec::Rsa(bits) => {
            use rsa::pkcs8::{EncodePrivateKey, LineEnding};
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits as usize)
                .map_err(|e| format!("generating an RSA {bits} key failed: {e}"))?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| format!("encoding the RSA key failed: {e}"))?;
            KeyPair::from_pem(&pem).map_err(|e| format!("loading the RSA key failed: {e}"))
        }
        KeySpec::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("generating a P-256 key failed: {e}")),
        KeySpec::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
            .map_err(|e| format!("generating a P-384 key failed: {e}")),
    }
}
