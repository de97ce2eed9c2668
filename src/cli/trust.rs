//! How the audit commands tell keyledger's commits from foreign messages: with the
//! commit key (an operator's check), or from the signed checkpoints, which name the
//! foreign messages they cover (an auditor holding only the public key).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use domain::chain::{Broken, Head, Judged, judge};
use domain::checkpoint::Foreign;
use domain::commit::{Commit, CommitKey, EventCodec};

use super::proof::PublicKeys;

/// What an audit command checks authenticity with.
#[derive(Debug, Clone, Args)]
pub struct TrustArgs {
    /// The commit key file (keyledger's commit.key): every commit's authenticator is
    /// checked with it. Without it, the signed checkpoints (--public-key) say which
    /// messages keyledger did not write, up to the latest checkpoint.
    #[arg(long, env = "KEYLEDGER_COMMIT_KEY_FILE")]
    pub commit_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub keys: PublicKeys,
}

/// Follows every aggregate's chain, skipping (and reporting on stderr) what keyledger
/// did not write.
pub struct Trust {
    key: Option<CommitKey>,
    listed: Foreign,
    heads: HashMap<String, Head>,
    /// How many foreign messages were skipped.
    pub foreign: u64,
}

impl Trust {
    /// Loads the commit key and the checkpoints' lists of foreign messages of `stream`.
    pub async fn load(
        args: &TrustArgs,
        js: &async_nats::jetstream::Context,
        stream: &str,
    ) -> Result<Self> {
        let key = args
            .commit_key_file
            .as_deref()
            .map(infra::keyfile::existing_commit_key)
            .transpose()
            .context("the commit key")?;
        let mut listed = Foreign::default();
        if let Some(keys) = args.keys.verifier()? {
            for (seq, note) in commands::log::checkpoints::read_all(js, stream).await? {
                match keys.open(&note) {
                    Ok(checkpoint) => listed.extend(&checkpoint.foreign),
                    Err(e) => eprintln!(
                        "note: checkpoint {seq} is not signed by a trusted key ({e}); passed \
                         over (run keyledger audit verify)"
                    ),
                }
            }
        } else if key.is_none() {
            eprintln!(
                "note: authenticity not checked: pass --commit-key-file, or --public-key to \
                 skip the messages the signed checkpoints name as foreign"
            );
        }
        Ok(Self {
            key,
            listed,
            heads: HashMap::new(),
            foreign: 0,
        })
    }

    /// Checks with `key` alone.
    pub fn with_key(key: CommitKey) -> Self {
        Self {
            key: Some(key),
            listed: Foreign::default(),
            heads: HashMap::new(),
            foreign: 0,
        }
    }

    /// The message at `seq` on `subject` as its aggregate's next commit, or `None` if it
    /// is foreign. `Err`: the log is broken there.
    pub fn next<E: EventCodec>(
        &mut self,
        seq: u64,
        subject: &str,
        bytes: &[u8],
    ) -> std::result::Result<Option<Commit<E>>, Broken> {
        let verdict = if self.listed.contains(seq) {
            Judged::Foreign("named as foreign by a signed checkpoint".into())
        } else {
            judge::<E>(subject, bytes, self.key.as_ref(), self.heads.get(subject))?
        };
        match verdict {
            Judged::Next(commit) => {
                self.heads.insert(subject.to_owned(), Head::from(&commit));
                Ok(Some(commit))
            }
            Judged::Foreign(reason) => {
                self.foreign += 1;
                eprintln!("sequence {seq} on {subject:?} skipped: {reason}");
                Ok(None)
            }
        }
    }
}
