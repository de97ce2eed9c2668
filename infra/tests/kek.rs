//! The KEK providers under one suite: the key file and a PKCS#11 token (SoftHSM2,
//! Debian's `softhsm2`, with a token initialised in a temporary directory). One test
//! function, so that the process's environment (SOFTHSM2_CONF) is set before any
//! other thread could read it.

#![allow(clippy::unwrap_used)]

#[path = "support/softhsm.rs"]
mod softhsm;

use infra::envelope::Envelope;
use infra::kek::{FileKek, Kek, KekError, Pkcs11Kek, Pkcs11Settings};

/// What every KEK must do: wrap and unwrap under a binding, refuse another binding,
/// another nonce or altered bytes, keep one id, and seal payloads in an envelope.
fn suite(kek: &dyn Kek) {
    let nonce = [7u8; 12];
    let dek = [42u8; 32];
    let wrapped = kek.seal(&nonce, &dek, b"binding").unwrap();
    assert_ne!(&wrapped[..32], &dek[..], "wrapped, not copied");
    assert_eq!(
        &kek.open(&nonce, &wrapped, b"binding").unwrap()[..],
        &dek[..]
    );
    assert_eq!(
        kek.open(&nonce, &wrapped, b"another binding").unwrap_err(),
        KekError::Unwrap
    );
    assert_eq!(
        kek.open(&[8u8; 12], &wrapped, b"binding").unwrap_err(),
        KekError::Unwrap
    );
    let mut altered = wrapped.clone();
    altered[0] ^= 1;
    assert_eq!(
        kek.open(&nonce, &altered, b"binding").unwrap_err(),
        KekError::Unwrap
    );
    assert_eq!(
        kek.open(&[0u8; 3], &wrapped, b"binding").unwrap_err(),
        KekError::Unwrap
    );
    assert!(!kek.id().is_empty());
    assert_eq!(
        *kek.fingerprint_key().unwrap(),
        *kek.fingerprint_key().unwrap()
    );
}

/// An envelope over `kek` seals and opens a payload bound to its secret.
fn envelope_round_trip(
    envelope: &Envelope,
) -> (
    domain::secret::payload::SealedPayload,
    infra::envelope::WrappedKey,
) {
    use domain::ids::{ProjectId, SecretId};
    use domain::secret::payload::{ContentType, PayloadLimit, Plaintext};
    use secrecy::ExposeSecret as _;
    let project = ProjectId::parse("p1").unwrap();
    let (secret, version, key) = ids();
    let text = Plaintext::from_bytes(
        b"hsm-canary".to_vec(),
        ContentType::TextPlain,
        PayloadLimit::default(),
    )
    .unwrap();
    let (sealed, wrapped) = envelope
        .seal(&text, &project, secret, version, key)
        .unwrap();
    assert_eq!(wrapped.kek_id, envelope.kek_id());
    let opened = envelope.open(&sealed, &wrapped, &project, secret).unwrap();
    assert_eq!(opened.expose_secret(), b"hsm-canary");
    let other = SecretId::from_uuid(uuid::Uuid::from_u128(99));
    assert!(envelope.open(&sealed, &wrapped, &project, other).is_err());
    (sealed, wrapped)
}

fn ids() -> (
    domain::ids::SecretId,
    domain::ids::VersionId,
    domain::ids::KeyId,
) {
    use domain::ids::{KeyId, SecretId, VersionId};
    (
        SecretId::from_uuid(uuid::Uuid::from_u128(1)),
        VersionId::from_uuid(uuid::Uuid::from_u128(2)),
        KeyId::from_uuid(uuid::Uuid::from_u128(3)),
    )
}

#[test]
fn both_kek_providers_pass_one_suite() {
    let file = FileKek::new(&[9u8; 32]);
    suite(&file);
    envelope_round_trip(&Envelope::new(&[9u8; 32]));

    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm::token(dir.path(), "kl-test", "1234");
    // SAFETY: the only test of this binary; no other thread reads the environment.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    let settings = Pkcs11Settings {
        module: softhsm::module(),
        token_label: "kl-test".into(),
        pin: "1234".to_owned().into(),
        key_label: "keyledger-kek".into(),
    };
    let (sealed, wrapped, id) = {
        let hsm = Pkcs11Kek::open(&settings).unwrap();
        suite(&hsm);
        let id = hsm.id().to_owned();
        assert!(id.starts_with("p11-"), "{id}");
        let envelope = Envelope::with_kek(Box::new(hsm)).unwrap();
        let (sealed, wrapped) = envelope_round_trip(&envelope);
        (sealed, wrapped, id)
    };
    // Opened again (a restart): the same KEK, found by its label, opens what it wrapped.
    let again = Pkcs11Kek::open(&settings).unwrap();
    assert_eq!(again.id(), id);
    let envelope = Envelope::with_kek(Box::new(again)).unwrap();
    let project = domain::ids::ProjectId::parse("p1").unwrap();
    assert!(envelope.open(&sealed, &wrapped, &project, ids().0).is_ok());
    drop(envelope);

    // The KEK cannot be read out of the token.
    {
        use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
        use cryptoki::object::{Attribute, AttributeType, ObjectClass};
        use cryptoki::session::UserType;
        use cryptoki::types::AuthPin;
        let context = Pkcs11::new(softhsm::module()).unwrap();
        context
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        let slot = context.get_slots_with_token().unwrap()[0];
        let session = context.open_ro_session(slot).unwrap();
        session
            .login(UserType::User, Some(&AuthPin::new("1234".into())))
            .unwrap();
        let keys = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(b"keyledger-kek".to_vec()),
            ])
            .unwrap();
        assert_eq!(keys.len(), 1);
        let attributes = session
            .get_attributes(
                keys[0],
                &[AttributeType::Sensitive, AttributeType::Extractable],
            )
            .unwrap();
        assert!(
            attributes.contains(&Attribute::Sensitive(true)),
            "{attributes:?}"
        );
        assert!(
            attributes.contains(&Attribute::Extractable(false)),
            "{attributes:?}"
        );
        let value = session
            .get_attributes(keys[0], &[AttributeType::Value])
            .unwrap_or_default();
        assert!(
            !value.iter().any(|a| matches!(a, Attribute::Value(_))),
            "the KEK's value is not readable: {value:?}"
        );
    }

    // A wrong PIN or token label says what to check, and never the PIN.
    let wrong = Pkcs11Settings {
        pin: "0000".to_owned().into(),
        ..settings.clone()
    };
    let e = Pkcs11Kek::open(&wrong)
        .err()
        .expect("a wrong PIN is refused")
        .to_string();
    assert!(e.contains("PIN") && !e.contains("0000"), "{e}");
    let missing = Pkcs11Settings {
        token_label: "nope".into(),
        ..settings
    };
    let e = Pkcs11Kek::open(&missing)
        .err()
        .expect("an unknown token")
        .to_string();
    assert!(e.contains("kl-test") && e.contains("nope"), "{e}");
}
