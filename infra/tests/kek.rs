//! The KEK providers under one suite: the key file and a PKCS#11 token (SoftHSM2,
//! Debian's `softhsm2`, with a token initialised in a temporary directory). One test
//! function, so that the process's environment (SOFTHSM2_CONF) is set before any
//! other thread could read it.

#![allow(clippy::unwrap_used)]

#[path = "support/softhsm.rs"]
mod softhsm;

use infra::envelope::{CryptoError, Envelope};
use infra::kek::{
    FileKek, FileSource, Kek, KekError, KekSource, Pkcs11Kek, Pkcs11Settings, Pkcs11Source,
};

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
    use secrecy::ExposeSecret as _;
    let project = ProjectId::parse("p1").unwrap();
    let (secret, version, key) = ids();
    let text = canary();
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

/// What every KEK source must do for a rotation: make version 0 on first use, a
/// new version once, keep opening what an old version wrapped, re-wrap it under the
/// new one keeping its fingerprint, and retire the old one for good. `make` opens the
/// source again (a restart).
fn rotation_suite(make: &dyn Fn() -> Box<dyn KekSource>) {
    let project = domain::ids::ProjectId::parse("p1").unwrap();
    let (secret, version, key) = ids();
    let text = canary();
    let (sealed, moved) = {
        let envelope = Envelope::from_source(make()).unwrap();
        assert_eq!(
            envelope.current_version(),
            0,
            "version 0 is made on first use"
        );
        let old = envelope.kek_id();
        let (sealed, wrapped) = envelope_round_trip(&envelope);
        let source = envelope.source().unwrap();
        assert_eq!(source.versions().unwrap(), vec![0]);
        source.create(1).unwrap();
        assert!(source.create(1).is_err(), "a version is made once");
        assert!(
            envelope.use_version(1, "another-kek").is_err(),
            "a version held under another id is refused"
        );
        // Until this node has the deployment's current KEK, it wraps nothing: not with
        // an older version, which a retirement would take away.
        let refused = envelope.seal(&text, &project, secret, version, key);
        assert!(matches!(refused, Err(CryptoError::Kek(_))), "{refused:?}");
        envelope.refresh().unwrap();
        let new = envelope.versions()[1].1.clone();
        envelope.use_version(1, &new).unwrap();
        assert_ne!(old, new);
        // Keys of the old version still open; new ones are wrapped by the new.
        assert!(envelope.open(&sealed, &wrapped, &project, secret).is_ok());
        let (_, fresh) = envelope_round_trip(&envelope);
        assert_eq!(fresh.kek_id, new);
        // A re-wrap moves the old key and keeps its fingerprint, by the KEK that made it.
        let moved = envelope
            .rewrap(&wrapped, &project, secret, key)
            .unwrap()
            .expect("wrapped by the old version");
        assert_eq!(moved.kek_id, new);
        assert_ne!(moved.nonce, wrapped.nonce);
        assert_eq!(moved.fingerprint, wrapped.fingerprint);
        assert_eq!(moved.fingerprinted_by(), old);
        assert!(
            envelope
                .rewrap(&moved, &project, secret, key)
                .unwrap()
                .is_none()
        );
        let retry = envelope.fingerprints(&text, &project, secret, version);
        assert_eq!(
            retry.compare(&moved),
            Some(true),
            "a retry matches after the re-wrap"
        );
        assert_eq!(retry.compare(&wrapped), Some(true), "and before it");
        // The binding holds: moved to another secret, it does not open.
        let other = domain::ids::SecretId::from_uuid(uuid::Uuid::from_u128(99));
        assert!(envelope.open(&sealed, &moved, &project, other).is_err());
        source.retire(0).unwrap();
        assert_eq!(source.versions().unwrap(), vec![1]);
        (sealed, moved)
    };
    // Opened again with only version 1: it is current, opens the moved key, and the
    // old wrapping is lost with version 0.
    let envelope = Envelope::from_source(make()).unwrap();
    assert_eq!(envelope.current_version(), 1);
    assert!(envelope.open(&sealed, &moved, &project, secret).is_ok());
    // A retry fingerprinted under the retired version can no longer be compared.
    let retry = envelope.fingerprints(&canary(), &project, secret, version);
    assert_eq!(retry.compare(&moved), None);
    let mut stale = moved.clone();
    stale.kek_id = "retired".into();
    assert!(matches!(
        envelope.open(&sealed, &stale, &project, secret),
        Err(CryptoError::WrongKek { .. })
    ));
}

/// The payload the suites seal.
fn canary() -> domain::secret::payload::Plaintext {
    use domain::secret::payload::{ContentType, PayloadLimit, Plaintext};
    Plaintext::from_bytes(
        b"hsm-canary".to_vec(),
        ContentType::TextPlain,
        PayloadLimit::default(),
    )
    .unwrap()
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

    // Rotation, with key files and with keys in the token.
    let files = tempfile::tempdir().unwrap();
    let base = files.path().join("kek.key");
    rotation_suite(&|| Box::new(FileSource::new(&base)));
    // A half-written key file and other names beside the KEK are not versions.
    std::fs::write(files.path().join("kek.key.5.0123abcd.tmp"), "x").unwrap();
    std::fs::write(files.path().join("kek.key.x"), "x").unwrap();
    assert_eq!(FileSource::new(&base).versions().unwrap(), vec![1]);
    let rotated = Pkcs11Settings {
        key_label: "rotated-kek".into(),
        ..missing
    };
    let rotated = Pkcs11Settings {
        token_label: "kl-test".into(),
        ..rotated
    };
    rotation_suite(&|| Box::new(Pkcs11Source::open(&rotated).unwrap()));
}
