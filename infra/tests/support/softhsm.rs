//! SoftHSM2 for tests (Debian's `softhsm2`): its PKCS#11 module, and a token
//! initialised in a temporary directory. Shared by `infra/tests/kek.rs` and the
//! end-to-end `tests/hsm.rs` (included there by path).

use std::path::{Path, PathBuf};

/// SoftHSM2's module: `$KEYLEDGER_SOFTHSM_MODULE`, else Debian's path.
pub fn module() -> PathBuf {
    let path = std::env::var_os("KEYLEDGER_SOFTHSM_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
    assert!(
        path.exists(),
        "SoftHSM2's PKCS#11 module is not at {}: install Debian's softhsm2 (.ci/run does), or \
         set KEYLEDGER_SOFTHSM_MODULE",
        path.display()
    );
    path
}

/// A SoftHSM2 configuration under `dir` with one token, `label`, whose user PIN is
/// `pin`; returns the configuration file, for SOFTHSM2_CONF.
pub fn token(dir: &Path, label: &str, pin: &str) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).expect("a token directory");
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .expect("SoftHSM2's configuration");
    let out = std::process::Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label, "--pin", pin])
        .args(["--so-pin", "so-pin-5678"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util (Debian's softhsm2)");
    assert!(out.status.success(), "{out:?}");
    conf
}
