//! A KEK held in an HSM through PKCS#11: an AES-256 key created inside the token on
//! first use (sensitive, not extractable), found again by its label. Data keys are
//! wrapped and unwrapped by AES-GCM inside the token with the same AAD binding as the
//! file KEK; the KEK's bytes never reach this process.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

use super::{FINGERPRINT_AAD, FINGERPRINT_NONCE, Kek, KekError, NONCE_LEN, id_from};

/// Where the KEK is: a PKCS#11 module, a token, its user PIN and the key's label.
#[derive(Clone)]
pub struct Pkcs11Settings {
    /// The module (e.g. /usr/lib/softhsm/libsofthsm2.so).
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The user PIN (from a file or the environment, never a flag).
    pub pin: SecretString,
    /// The KEK's label in the token.
    pub key_label: String,
}

impl std::fmt::Debug for Pkcs11Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Settings")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .finish_non_exhaustive()
    }
}

/// The default label of the KEK in the token.
pub const DEFAULT_KEY_LABEL: &str = "keyledger-kek";

/// GCM's tag, in bits.
const TAG_BITS: u64 = 128;

/// A logged-in session with a PKCS#11 token, shared by every KEK version held in it:
/// one context per process, because dropping a context finalises the module under
/// every other session of the process.
pub struct Token {
    // The context must outlive the session; the session is used by one thread at a
    // time (PKCS#11 sessions are not to be shared concurrently).
    session: Mutex<Session>,
    label: String,
    _context: Pkcs11,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({:?})", self.label)
    }
}

fn provider(what: &str) -> impl Fn(cryptoki::error::Error) -> KekError + '_ {
    move |e| KekError::Provider(format!("{what}: {e}"))
}

/// What finds the AES keys labelled `label`.
fn key_template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

impl Token {
    /// Opens the token `settings` names and logs in.
    pub fn open(settings: &Pkcs11Settings) -> Result<Arc<Self>, KekError> {
        let context = Pkcs11::new(&settings.module).map_err(|e| {
            KekError::Provider(format!(
                "loading the PKCS#11 module {}: {e}",
                settings.module.display()
            ))
        })?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            // Another context of this process initialised the module: it is usable.
            Ok(())
            | Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::CryptokiAlreadyInitialized,
                _,
            )) => {}
            Err(e) => return Err(provider("initializing the PKCS#11 module")(e)),
        }
        let slots = context
            .get_slots_with_token()
            .map_err(provider("listing the tokens"))?;
        let mut labels = Vec::new();
        let mut found = None;
        for slot in slots {
            let info = context
                .get_token_info(slot)
                .map_err(provider("reading a token's label"))?;
            let label = info.label().trim().to_owned();
            if label == settings.token_label {
                found = Some(slot);
                break;
            }
            labels.push(label);
        }
        let slot = found.ok_or_else(|| {
            KekError::Provider(format!(
                "no token labelled {:?} in {} (tokens: {}); initialise one (softhsm2-util \
                 --init-token --free --label {0:?}) or pass --kek-pkcs11-token-label",
                settings.token_label,
                settings.module.display(),
                if labels.is_empty() {
                    "none".to_owned()
                } else {
                    labels.join(", ")
                }
            ))
        })?;
        let session = context
            .open_rw_session(slot)
            .map_err(provider("opening a session"))?;
        session
            .login(
                UserType::User,
                Some(&AuthPin::new(settings.pin.expose_secret().into())),
            )
            .map_err(|e| {
                KekError::Provider(format!(
                    "logging in to token {:?}: {e}; check the PIN file",
                    settings.token_label
                ))
            })?;
        Ok(Arc::new(Self {
            session: Mutex::new(session),
            label: settings.token_label.clone(),
            _context: context,
        }))
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        // A panic while holding the lock leaves the session as usable as before.
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The KEK labelled `label`, if the token holds one; more than one is refused.
    pub fn find(self: &Arc<Self>, label: &str) -> Result<Option<Pkcs11Kek>, KekError> {
        let found = self
            .session()
            .find_objects(&key_template(label))
            .map_err(provider("looking for the KEK"))?;
        match found.as_slice() {
            [] => Ok(None),
            [one] => Pkcs11Kek::new(self.clone(), *one).map(Some),
            _ => Err(KekError::Provider(format!(
                "{} keys labelled {label:?} in token {:?}: keyledger cannot tell which is the \
                 KEK; keep the one that wrapped the stored keys (`keyledger keys status` names \
                 their KEK ids) and destroy the others with the token's tools",
                found.len(),
                self.label
            ))),
        }
    }

    /// Creates the KEK `label` inside the token: sensitive, never extractable.
    pub fn generate(self: &Arc<Self>, label: &str) -> Result<Pkcs11Kek, KekError> {
        let mut template = key_template(label);
        template.extend([
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
        ]);
        let made = self
            .session()
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(provider("creating the KEK in the token"))?;
        // Looked for again: another process making it at the same moment makes two
        // keys with one label. Whoever finds another key beside its own takes its own
        // back, so two never stay (at worst both take theirs back, and both fail).
        let found = self
            .session()
            .find_objects(&key_template(label))
            .map_err(provider("looking for the KEK"))?;
        match found.as_slice() {
            [one] if *one == made => Pkcs11Kek::new(self.clone(), made),
            _ => {
                self.session()
                    .destroy_object(made)
                    .map_err(provider("taking back a KEK made twice"))?;
                Err(KekError::Provider(format!(
                    "another process made the KEK {label:?} in token {:?} at the same moment; \
                     run this again",
                    self.label
                )))
            }
        }
    }

    /// The labels of the AES keys the token holds.
    pub fn labels(&self) -> Result<Vec<String>, KekError> {
        let session = self.session();
        let keys = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
            ])
            .map_err(provider("listing the token's keys"))?;
        let mut labels = Vec::new();
        for key in keys {
            let attributes = session
                .get_attributes(key, &[AttributeType::Label])
                .map_err(provider("reading a key's label"))?;
            for attribute in attributes {
                if let Attribute::Label(bytes) = attribute {
                    labels.push(String::from_utf8_lossy(&bytes).into_owned());
                }
            }
        }
        Ok(labels)
    }

    /// Destroys the KEK labelled `label` inside the token: what it wrapped can no
    /// longer be opened by anyone.
    pub fn destroy(&self, label: &str) -> Result<(), KekError> {
        let session = self.session();
        let found = session
            .find_objects(&key_template(label))
            .map_err(provider("looking for the KEK"))?;
        for key in found {
            session
                .destroy_object(key)
                .map_err(provider("destroying the KEK in the token"))?;
        }
        Ok(())
    }
}

/// A KEK in a PKCS#11 token.
pub struct Pkcs11Kek {
    token: Arc<Token>,
    key: ObjectHandle,
    id: String,
}

impl Pkcs11Kek {
    /// Opens the token `settings` names, logs in, and finds the KEK by its label, or
    /// creates it inside the token when missing.
    pub fn open(settings: &Pkcs11Settings) -> Result<Self, KekError> {
        let token = Token::open(settings)?;
        match token.find(&settings.key_label)? {
            Some(kek) => Ok(kek),
            None => token.generate(&settings.key_label),
        }
    }

    fn new(token: Arc<Token>, key: ObjectHandle) -> Result<Self, KekError> {
        let kek = Self {
            token,
            key,
            id: String::new(),
        };
        let zero = kek.seal(&[0; NONCE_LEN], &[0; 16], &[])?;
        Ok(Self {
            id: format!("p11-{}", id_from(&zero)),
            ..kek
        })
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.token.session()
    }
}

impl Kek for Pkcs11Kek {
    fn id(&self) -> &str {
        &self.id
    }

    fn seal(&self, nonce: &[u8; NONCE_LEN], dek: &[u8], aad: &[u8]) -> Result<Vec<u8>, KekError> {
        let mut iv = *nonce;
        let params =
            GcmParams::new(&mut iv, aad, TAG_BITS.into()).map_err(provider("GCM parameters"))?;
        let sealed = self
            .session()
            .encrypt(&Mechanism::AesGcm(params), self.key, dek)
            .map_err(provider("wrapping in the token"))?;
        // PKCS#11 lets a token make the IV itself and write it back: the nonce stored
        // with the wrapped key would then not be the one used, and it could never be
        // opened. keyledger needs a token that takes the caller's nonce.
        if iv != *nonce {
            return Err(KekError::Provider(
                "the token chose its own GCM nonce; keyledger needs one that uses the \
                 caller's (a FIPS-mode setting may forbid it)"
                    .into(),
            ));
        }
        Ok(sealed)
    }

    fn open(
        &self,
        nonce: &[u8],
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KekError> {
        let mut iv: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KekError::Unwrap)?;
        let params =
            GcmParams::new(&mut iv, aad, TAG_BITS.into()).map_err(provider("GCM parameters"))?;
        use cryptoki::error::{Error, RvError};
        self.session()
            .decrypt(&Mechanism::AesGcm(params), self.key, wrapped)
            .map(Zeroizing::new)
            .map_err(|e| match e {
                // A tag that does not verify: the binding or the bytes are wrong.
                // SoftHSM2 reports it as CKR_GENERAL_ERROR rather than the standard's
                // CKR_ENCRYPTED_DATA_INVALID.
                Error::Pkcs11(
                    RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::GeneralError,
                    _,
                ) => KekError::Unwrap,
                other => provider("unwrapping in the token")(other),
            })
    }

    fn fingerprint_key(&self) -> Result<Zeroizing<[u8; 32]>, KekError> {
        let sealed = self.seal(&FINGERPRINT_NONCE, &[0; 32], FINGERPRINT_AAD)?;
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(sealed.get(..32).ok_or_else(|| {
            KekError::Provider("the token's AES-GCM returned less than it encrypted".into())
        })?);
        Ok(key)
    }
}
