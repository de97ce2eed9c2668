//! Key files in the data directory: hex-encoded random bytes, readable only by the
//! owner (mode 0600), created atomically on first use.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or creating it failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Group or others can read it: the key must be treated as disclosed.
    #[error(
        "{path} holds a secret and is accessible by other users (mode {mode:o}); run `chmod \
         600 {path}`"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The content is not the expected number of hex-encoded bytes.
    #[error("key file {path} does not hold {len} hex-encoded bytes; restore it from backup")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Expected key length in bytes.
        len: usize,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Creates the directory `path` (and its parents) and makes it private to its owner
/// (mode 0700): the data directory and the nats-server's store hold keys, ciphertext,
/// logs that may name users, and the read model.
pub fn private_dir(path: &Path) -> Result<(), KeyFileError> {
    fs::create_dir_all(path).map_err(io(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io(path))
}

/// Fills `buf` from the operating system's random source.
pub fn random_bytes(buf: &mut [u8]) {
    // The OS random source only fails on platforms keyledger does not run on (no
    // getrandom(2) and no /dev/urandom); continuing with predictable keys is never
    // acceptable, so this is one of the few deliberate panics.
    getrandom::fill(buf).expect("the operating system's random source is unavailable");
}

/// The text of the file at `path`, which holds a secret (a key, an HSM's PIN): only
/// its owner may have access to it.
pub fn private_text(path: &Path) -> Result<Zeroizing<String>, KeyFileError> {
    let mode = fs::metadata(path).map_err(io(path))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.to_owned(),
            mode: mode & 0o777,
        });
    }
    Ok(Zeroizing::new(fs::read_to_string(path).map_err(io(path))?))
}

/// Reads the `len`-byte key at `path`.
pub fn load(path: &Path, len: usize) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let text = private_text(path)?;
    let bytes = Zeroizing::new(
        hex::decode(text.trim()).map_err(|_| KeyFileError::Malformed {
            path: path.to_owned(),
            len,
        })?,
    );
    if bytes.len() != len {
        return Err(KeyFileError::Malformed {
            path: path.to_owned(),
            len,
        });
    }
    Ok(bytes)
}

/// Reads the key at `path`, creating it with `len` fresh random bytes (mode 0600) if
/// the file does not exist. Creation is atomic: the key is written whole to a private
/// temporary file and then hard-linked into place, which fails if the file exists. Two
/// processes starting at once end up with the same key, and neither ever reads a
/// half-written one.
pub fn load_or_create(path: &Path, len: usize) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    if !path.exists() {
        let mut key = Zeroizing::new(vec![0u8; len]);
        random_bytes(&mut key);
        let hexed = Zeroizing::new(hex::encode(&*key));
        let mut nonce = [0u8; 8];
        random_bytes(&mut nonce);
        let tmp = PathBuf::from(format!("{}.{}.tmp", path.display(), hex::encode(nonce)));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut file| {
                file.write_all(hexed.as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| fs::hard_link(&tmp, path));
        let _ = fs::remove_file(&tmp);
        match written {
            Ok(()) => {}
            // Someone else created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(path)(e)),
        }
    }
    load(path, len)
}

/// File name of the commit key inside the data directory.
pub const COMMIT_KEY_FILE: &str = "commit.key";

/// The commit key at `path` (32 bytes, hex, mode 0600), created on first use: every
/// component that writes or reads the log loads the same file.
pub fn commit_key(path: &Path) -> Result<domain::commit::CommitKey, KeyFileError> {
    load_or_create(path, 32).map(|bytes| to_commit_key(&bytes))
}

/// The existing commit key at `path` (for auditors: never created).
pub fn existing_commit_key(path: &Path) -> Result<domain::commit::CommitKey, KeyFileError> {
    load(path, 32).map(|bytes| to_commit_key(&bytes))
}

/// `bytes` (32 of them, as `load` checked) as a commit key.
fn to_commit_key(bytes: &[u8]) -> domain::commit::CommitKey {
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(bytes);
    domain::commit::CommitKey::new(*key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let a = load_or_create(&path, 32).unwrap();
        let b = load_or_create(&path, 32).unwrap();
        assert_eq!(*a, *b);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn racing_creators_agree_on_one_whole_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let keys: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create(&path, 32).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| **k == *keys[0]));
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "temporary files are removed");
    }

    #[test]
    fn a_world_readable_key_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        load_or_create(&path, 32).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path, 32).unwrap_err().to_string();
        assert!(err.contains("mode 644"), "{err}");
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_truncated_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap()
            .write_all(b"abcd")
            .unwrap();
        assert!(matches!(
            load(&path, 32),
            Err(KeyFileError::Malformed { .. })
        ));
    }
}
