//! Where a node's KEK versions live, so that rotation can add one and retirement can
//! remove one: key files beside the first (`kek.key`, `kek.key.1`, `kek.key.2`, ...)
//! or keys in one PKCS#11 token (`keyledger-kek`, `keyledger-kek-1`, ...). Version 0
//! is the KEK keyledger always had, under its old name, so existing data directories
//! and tokens need nothing done to them.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{FileKek, Kek, KekError, Pkcs11Settings, Token};
use crate::keyfile;

/// A KEK version's number: 0 for the first, one more for each rotation.
pub type KekVersion = u32;

/// The KEK versions a node can load, create and retire.
pub trait KekSource: Send + Sync {
    /// The versions present, ascending.
    fn versions(&self) -> Result<Vec<KekVersion>, KekError>;

    /// Version `version`, if present.
    fn load(&self, version: KekVersion) -> Result<Option<Box<dyn Kek>>, KekError>;

    /// Makes version `version`; refused if it exists.
    fn create(&self, version: KekVersion) -> Result<Box<dyn Kek>, KekError>;

    /// Destroys version `version`: what only it wrapped can never be opened again.
    fn retire(&self, version: KekVersion) -> Result<(), KekError>;

    /// Where version `version` is (a file or a token label), for messages.
    fn name(&self, version: KekVersion) -> String;
}

/// KEK versions in key files: `base` is version 0, `base.N` version N.
#[derive(Debug, Clone)]
pub struct FileSource {
    base: PathBuf,
}

impl FileSource {
    /// Versions beside the KEK file `base`.
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Self { base: base.into() }
    }

    fn path(&self, version: KekVersion) -> PathBuf {
        if version == 0 {
            self.base.clone()
        } else {
            PathBuf::from(format!("{}.{version}", self.base.display()))
        }
    }

    fn io(&self, version: KekVersion) -> impl Fn(std::io::Error) -> KekError + '_ {
        move |e| KekError::Provider(format!("{}: {e}", self.path(version).display()))
    }
}

fn file_kek(bytes: &[u8]) -> Box<dyn Kek> {
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    key.copy_from_slice(bytes);
    Box::new(FileKek::new(&key))
}

impl KekSource for FileSource {
    fn versions(&self) -> Result<Vec<KekVersion>, KekError> {
        let dir = match self.base.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let Some(stem) = self.base.file_name().and_then(|n| n.to_str()) else {
            return Ok(Vec::new());
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(KekError::Provider(format!("{}: {e}", dir.display()))),
        };
        let mut versions = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name == stem {
                versions.push(0);
            } else if let Some(n) = name
                .strip_prefix(stem)
                .and_then(|rest| rest.strip_prefix('.'))
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<KekVersion>().ok())
                .filter(|n| *n > 0)
            {
                versions.push(n);
            }
        }
        versions.sort_unstable();
        Ok(versions)
    }

    fn load(&self, version: KekVersion) -> Result<Option<Box<dyn Kek>>, KekError> {
        let path = self.path(version);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = keyfile::load(&path, 32).map_err(|e| KekError::Provider(e.to_string()))?;
        Ok(Some(file_kek(&bytes)))
    }

    fn create(&self, version: KekVersion) -> Result<Box<dyn Kek>, KekError> {
        let path = self.path(version);
        if path.exists() {
            return Err(KekError::Provider(format!(
                "KEK version {version} exists already ({}): another rotation made it a moment \
                 ago, or a staged one was copied here; see `keyledger keys status`, then run \
                 this again",
                path.display()
            )));
        }
        let bytes =
            keyfile::load_or_create(&path, 32).map_err(|e| KekError::Provider(e.to_string()))?;
        Ok(file_kek(&bytes))
    }

    fn retire(&self, version: KekVersion) -> Result<(), KekError> {
        let path = self.path(version);
        // Overwritten before it is unlinked, so its bytes do not simply stay in the
        // freed blocks (on a copy-on-write or journaling file system they may anyway:
        // keep KEK files on storage that is itself encrypted).
        let len = std::fs::metadata(&path).map_err(self.io(version))?.len();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(self.io(version))?;
        file.write_all(&vec![0u8; usize::try_from(len).unwrap_or(64)])
            .and_then(|()| file.sync_all())
            .map_err(self.io(version))?;
        std::fs::remove_file(&path).map_err(self.io(version))
    }

    fn name(&self, version: KekVersion) -> String {
        self.path(version).display().to_string()
    }
}

/// KEK versions in one PKCS#11 token: the key labelled `label` is version 0, the one
/// labelled `label-N` version N.
#[derive(Debug, Clone)]
pub struct Pkcs11Source {
    token: Arc<Token>,
    label: String,
}

impl Pkcs11Source {
    /// Opens the token `settings` names; its key label is version 0's.
    pub fn open(settings: &Pkcs11Settings) -> Result<Self, KekError> {
        Ok(Self {
            token: Token::open(settings)?,
            label: settings.key_label.clone(),
        })
    }

    fn label(&self, version: KekVersion) -> String {
        if version == 0 {
            self.label.clone()
        } else {
            format!("{}-{version}", self.label)
        }
    }
}

impl KekSource for Pkcs11Source {
    fn versions(&self) -> Result<Vec<KekVersion>, KekError> {
        let mut versions: Vec<KekVersion> = self
            .token
            .labels()?
            .iter()
            .filter_map(|label| {
                if *label == self.label {
                    return Some(0);
                }
                label
                    .strip_prefix(self.label.as_str())?
                    .strip_prefix('-')
                    .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))?
                    .parse::<KekVersion>()
                    .ok()
                    .filter(|n| *n > 0)
            })
            .collect();
        versions.sort_unstable();
        versions.dedup();
        Ok(versions)
    }

    fn load(&self, version: KekVersion) -> Result<Option<Box<dyn Kek>>, KekError> {
        Ok(self
            .token
            .find(&self.label(version))?
            .map(|k| Box::new(k) as Box<dyn Kek>))
    }

    fn create(&self, version: KekVersion) -> Result<Box<dyn Kek>, KekError> {
        let label = self.label(version);
        if self.token.find(&label)?.is_some() {
            return Err(KekError::Provider(format!(
                "KEK version {version} exists already (label {label:?}): another rotation made \
                 it a moment ago; see `keyledger keys status`, then run this again"
            )));
        }
        Ok(Box::new(self.token.generate(&label)?))
    }

    fn retire(&self, version: KekVersion) -> Result<(), KekError> {
        self.token.destroy(&self.label(version))
    }

    fn name(&self, version: KekVersion) -> String {
        format!("the token's key {:?}", self.label(version))
    }
}
