//! `keyledger keys`: rotating the key-encryption key while keyledger runs. A new KEK
//! version becomes current (`rotate-kek`), every stored data key is wrapped again
//! under it (`rewrap`), and an old version is destroyed once no key names it
//! (`retire-kek`). Each step is a commit of the keyring (`domain::keyring`).

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use async_nats::jetstream::kv;
use clap::{Args, Subcommand};
use commands::keyring::rewrap::{self, Report};
use commands::shared::store::EventStore;
use domain::keyring::{KekRetired, KekRotated, KeyringEvent, RewrapFinished, RewrapStarted};
use infra::envelope::{Envelope, KEK_FILE};
use infra::kek::current::{self, CurrentKek, Found};
use infra::kek::{FileSource, KekSource, KekVersion, Pkcs11Source};

use super::args::{CommitKeyArgs, DataDirArgs, LogArgs, Pkcs11Args};
use super::progress::Bar;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make the next KEK version and wrap new data keys with it from now on, on every
    /// node (each follows the change at once). With --stage, only make it: copy a
    /// staged key file to every node, then run rotate-kek again to make it current.
    RotateKek {
        #[command(flatten)]
        keys: KeysArgs,
        /// Only make the next version; do not make it current yet.
        #[arg(long)]
        stage: bool,
    },
    /// Wrap every stored data key again under the current KEK while keyledger serves
    /// traffic. Resumable: run it again after an interruption, it skips what is done.
    Rewrap {
        #[command(flatten)]
        keys: KeysArgs,
        /// At most this many keys per second (spares the HSM and NATS under load).
        #[arg(long)]
        rate: Option<NonZeroU32>,
    },
    /// Destroy an old KEK version, refused while any stored key is still wrapped by it
    /// (run `keys rewrap` first). Backups taken before the re-wrap need it: keep a
    /// copy for as long as you keep them.
    RetireKek {
        #[command(flatten)]
        keys: KeysArgs,
        /// The version to destroy.
        version: KekVersion,
    },
    /// The current KEK, the versions held here, and how many stored keys each wraps.
    Status {
        #[command(flatten)]
        keys: KeysArgs,
    },
}

/// Where the KEK versions and the deployment are.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// NATS URL with keyledger's service credentials (the key store is readable by
    /// that account only), e.g. nats://keyledger:$(cat .keyledger/nats-service.key)@127.0.0.1:4222.
    #[arg(long, env = "KEYLEDGER_NATS_URL", hide_env_values = true)]
    pub nats_url: String,
    #[command(flatten)]
    pub data: DataDirArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// The KEK file of version 0; later versions are beside it (kek.key.1, ...).
    /// Default: <data-dir>/kek.key.
    #[arg(long, env = "KEYLEDGER_KEK_FILE")]
    pub kek_file: Option<PathBuf>,
    #[command(flatten)]
    pub pkcs11: Pkcs11Args,
    #[command(flatten)]
    pub commit_key: CommitKeyArgs,
}

/// What every `keys` command works with.
struct Deployment {
    envelope: Arc<Envelope>,
    bucket: kv::Store,
    store: EventStore,
    clock: infra::clock::Clock,
}

/// The deployment's current KEK as the `keys` commands see it.
struct Current {
    kek: CurrentKek,
    /// The entry's revision; `None` before the first rotation.
    revision: Option<u64>,
    /// Why the entry cannot be read, when it is malformed.
    malformed: Option<String>,
}

impl KeysArgs {
    fn source(&self) -> Result<Box<dyn KekSource>> {
        Ok(match self.pkcs11.settings()? {
            Some(settings) => Box::new(
                Pkcs11Source::open(&settings).map_err(|e| anyhow::anyhow!("the HSM: {e}"))?,
            ),
            None => Box::new(FileSource::new(
                self.kek_file
                    .clone()
                    .unwrap_or_else(|| self.data.data_dir.join(KEK_FILE)),
            )),
        })
    }

    /// Opens the deployment; `writes` for the commands that change it, which need a
    /// log to check their commit key against.
    async fn open(&self, writes: bool) -> Result<Deployment> {
        let source = self.source()?;
        if source.versions()?.is_empty() {
            bail!(
                "no KEK at {}: point --data-dir, --kek-file or the --kek-pkcs11-* flags at the \
                 deployment's KEK",
                source.name(0)
            );
        }
        let envelope = Arc::new(Envelope::from_source(source)?);
        let commit = self.commit_key.load(&self.data)?;
        let client = infra::nats::connect(&self.nats_url, "keyledger-keys").await?;
        let js = async_nats::jetstream::new(client);
        let bucket = js.get_key_value(infra::log::KEY_BUCKET).await.context(
            "opening the key store: is keyledger running against this NATS, and is the URL's \
             user keyledger's service user?",
        )?;
        // An operator tool never creates the log: a missing one is named.
        js.get_stream(&self.log.stream)
            .await
            .with_context(|| format!("opening the event stream {}", self.log.stream))?;
        keyledger::stack::deployment::check_commit_key(&js, &self.log.stream, &commit, writes)
            .await?;
        let store = EventStore::open(js, &self.log.settings(), commit).await?;
        Ok(Deployment {
            envelope,
            bucket,
            store,
            clock: infra::clock::system(),
        })
    }
}

pub async fn run(command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::RotateKek { keys, stage } => rotate(&keys.open(true).await?, stage).await,
        KeysCommand::Rewrap { keys, rate } => rewrap(&keys.open(true).await?, rate).await,
        KeysCommand::RetireKek { keys, version } => retire(&keys.open(true).await?, version).await,
        KeysCommand::Status { keys } => status(&keys.open(false).await?).await,
    }
}

/// The deployment's current KEK. Without a readable entry, the version the log's last
/// rotation names (version 0 before any), so that a lost or damaged entry is repaired
/// from the record rather than guessed.
async fn current(d: &Deployment) -> Result<Current> {
    let logged = commands::keyring::load(&d.store).await?.state.current;
    let oldest = || {
        let versions = d.envelope.versions();
        let (version, kek_id) = versions
            .iter()
            .find(|(v, _)| *v == logged)
            .cloned()
            .unwrap_or_else(|| (logged, "(not held here)".to_owned()));
        CurrentKek { version, kek_id }
    };
    Ok(match current::read(&d.bucket).await? {
        Found::Current(kek, revision) => Current {
            kek,
            revision: Some(revision),
            malformed: None,
        },
        Found::Absent if logged == 0 => Current {
            kek: oldest(),
            revision: None,
            malformed: None,
        },
        Found::Absent => Current {
            kek: oldest(),
            revision: None,
            malformed: Some(format!(
                "it is missing, though the log records a rotation to version {logged}"
            )),
        },
        Found::Malformed(why, revision) => Current {
            kek: oldest(),
            revision: Some(revision),
            malformed: Some(why),
        },
    })
}

impl Current {
    /// Refuses to go on while nobody can tell which KEK is current.
    fn readable(&self) -> Result<&CurrentKek> {
        match &self.malformed {
            None => Ok(&self.kek),
            Some(why) => bail!(
                "the current-KEK entry ({}) is not what keyledger writes there ({why}): run \
                 `keyledger keys rotate-kek` to write it again",
                current::ENTRY
            ),
        }
    }
}

/// Refuses a node that does not hold the deployment's KEKs (another data directory's
/// key files): what it made or destroyed would be some other deployment's.
async fn check_holds(d: &Deployment, current: &Current) -> Result<()> {
    let held: Vec<String> = d
        .envelope
        .versions()
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    if current.malformed.is_none() && current.revision.is_some() {
        if held.contains(&current.kek.kek_id) {
            return Ok(());
        }
        bail!(
            "this node does not hold the deployment's current KEK (version {}, {}): point \
             --data-dir, --kek-file or the --kek-pkcs11-* flags at the deployment's KEK",
            current.kek.version,
            current.kek.kek_id
        );
    }
    let census = rewrap::census(&d.bucket).await?;
    if !census.is_empty() && !census.keys().any(|id| held.contains(id)) {
        bail!(
            "the key store's keys are wrapped by KEK {}, none of which this node holds: point \
             --data-dir, --kek-file or the --kek-pkcs11-* flags at the deployment's KEK",
            census.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

async fn rotate(d: &Deployment, stage: bool) -> Result<()> {
    let current = current(d).await?;
    check_holds(d, &current).await?;
    if let Some(why) = &current.malformed {
        eprintln!(
            "the current-KEK entry is malformed ({why}); this rotation writes it again, from \
             version {}",
            current.kek.version
        );
    }
    let from = &current.kek;
    let source = d
        .envelope
        .source()
        .context("the envelope has no KEK source")?;
    let newest = d.envelope.versions().last().map_or(0, |(v, _)| *v);
    // A version staged earlier (made, not yet current) is made current now.
    let made = newest <= from.version || stage;
    let to = if !made {
        newest
    } else {
        let next = newest + 1;
        source.create(next)?;
        d.envelope.refresh()?;
        next
    };
    let kek_id = d
        .envelope
        .versions()
        .into_iter()
        .find_map(|(v, id)| (v == to).then_some(id))
        .context("the new KEK version cannot be loaded back")?;
    if stage {
        println!(
            "KEK version {to} ({kek_id}) is made, not current: {}. Give every node running \
             keyledger a copy (the same path beside its KEK), then run `keyledger keys \
             rotate-kek` to make it current.",
            source.name(to)
        );
        return Ok(());
    }
    // The compare-and-set decides which of two rotations at once wins; only the winner
    // records one.
    let set = current::set(
        &d.bucket,
        &CurrentKek {
            version: to,
            kek_id: kek_id.clone(),
        },
        current.revision,
    )
    .await;
    if let Err(e) = set {
        // Lost to another rotation: the version made here is nobody's.
        if made && let Err(cleanup) = source.retire(to) {
            eprintln!(
                "removing the version made here ({}): {cleanup}",
                source.name(to)
            );
        }
        return Err(e.into());
    }
    commands::keyring::record(
        &d.store,
        KeyringEvent::Rotated(KekRotated {
            from: from.version,
            to,
            kek_id: kek_id.clone(),
        }),
        &d.clock,
    )
    .await
    .context("the rotation took effect, but its commit could not be appended")?;
    // Every older version this node holds, not only the one just replaced: one a
    // rotation before left behind still opens the keys it wrapped.
    let older: Vec<String> = d
        .envelope
        .versions()
        .into_iter()
        .filter(|(v, _)| *v != to)
        .map(|(v, _)| v.to_string())
        .collect();
    let retire = older
        .iter()
        .map(|v| format!("`keyledger keys retire-kek {v}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if older.is_empty() {
        println!("KEK version {to} ({kek_id}) is current: new data keys are wrapped by it.");
        return Ok(());
    }
    println!(
        "KEK version {to} ({kek_id}) is current: new data keys are wrapped by it. {} {} \
         still open{} the keys {} wrapped; run `keyledger keys rewrap` to move them to version \
         {to}, then {retire} (`keyledger keys status` says which versions still wrap keys).",
        if older.len() == 1 {
            "Version"
        } else {
            "Versions"
        },
        older.join(", "),
        if older.len() == 1 { "s" } else { "" },
        if older.len() == 1 { "it" } else { "they" },
    );
    Ok(())
}

async fn rewrap(d: &Deployment, rate: Option<NonZeroU32>) -> Result<()> {
    let current = current(d).await?;
    let current = current.readable()?;
    d.envelope.use_version(current.version, &current.kek_id)?;
    let total = d
        .bucket
        .status()
        .await
        .context("reading the key store's size")?
        .values();
    commands::keyring::record(
        &d.store,
        KeyringEvent::RewrapStarted(RewrapStarted {
            to: current.version,
            total,
        }),
        &d.clock,
    )
    .await?;
    let bar = Bar::new("re-wrapped", total);
    let report = rewrap::rewrap_all(&d.bucket, &d.envelope, rate, |r: &Report| {
        bar.at(r.seen);
    })
    .await?;
    bar.done();
    if report.failed > 0 {
        // Running again helps with a failure of the moment, never with a key wrapped by
        // a KEK this node does not hold: that one is named.
        let held: Vec<String> = d
            .envelope
            .versions()
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        let unheld: Vec<String> = rewrap::census(&d.bucket)
            .await?
            .into_iter()
            .filter(|(kek, _)| !held.contains(kek))
            .map(|(kek, n)| format!("{n} by KEK {kek}"))
            .collect();
        if !unheld.is_empty() {
            bail!(
                "{} of {} keys could not be re-wrapped: the key store holds keys wrapped by a \
                 KEK this node does not hold ({}); give the node that KEK (its file beside \
                 kek.key, or its key in the HSM) and run `keyledger keys rewrap` again",
                report.failed,
                report.seen,
                unheld.join("; ")
            );
        }
        bail!(
            "{} of {} keys could not be re-wrapped (see the log above); run `keyledger keys \
             rewrap` again",
            report.failed,
            report.seen
        );
    }
    commands::keyring::record(
        &d.store,
        KeyringEvent::RewrapFinished(RewrapFinished {
            to: current.version,
            rewrapped: report.rewrapped,
            already: report.already,
            gone: report.gone,
        }),
        &d.clock,
    )
    .await?;
    println!(
        "every stored data key is wrapped by KEK version {}: {} re-wrapped now, {} already, {} \
         destroyed meanwhile",
        current.version, report.rewrapped, report.already, report.gone
    );
    Ok(())
}

async fn retire(d: &Deployment, version: KekVersion) -> Result<()> {
    let found = current(d).await?;
    check_holds(d, &found).await?;
    let current = found.readable()?;
    if version == current.version {
        bail!(
            "KEK version {version} is current: rotate to a new one (`keyledger keys rotate-kek`) \
             and re-wrap before retiring it"
        );
    }
    let source = d
        .envelope
        .source()
        .context("the envelope has no KEK source")?;
    let Some(kek_id) = d
        .envelope
        .versions()
        .into_iter()
        .find_map(|(v, id)| (v == version).then_some(id))
    else {
        let retired = commands::keyring::load(&d.store)
            .await?
            .state
            .retired
            .contains(&version);
        if retired {
            println!("KEK version {version} was retired already");
            return Ok(());
        }
        bail!(
            "KEK version {version} is not held here ({}): nothing to retire",
            source.name(version)
        );
    };
    // Counted right before the key is destroyed: a key still wrapped by it would be
    // lost with it.
    let still = rewrap::census(&d.bucket)
        .await?
        .get(&kek_id)
        .copied()
        .unwrap_or(0);
    if still > 0 {
        bail!(
            "{still} stored data keys are still wrapped by KEK version {version}: run `keyledger \
             keys rewrap` first (and make sure every node wraps with version {}: its log says so)",
            current.version
        );
    }
    source.retire(version)?;
    commands::keyring::record(
        &d.store,
        KeyringEvent::Retired(KekRetired {
            version,
            kek_id: kek_id.clone(),
        }),
        &d.clock,
    )
    .await?;
    println!(
        "KEK version {version} ({kek_id}) is destroyed here ({}). Remove it from every other \
         node too; backups taken before the re-wrap can no longer be read without a copy of it.",
        source.name(version)
    );
    Ok(())
}

async fn status(d: &Deployment) -> Result<()> {
    let current = current(d).await?;
    let census = rewrap::census(&d.bucket).await?;
    let keyring = commands::keyring::load(&d.store).await?.state;
    let held: Vec<(KekVersion, String)> = d.envelope.versions();
    match (&current.malformed, current.revision) {
        (Some(why), _) => println!(
            "current KEK: unknown: the entry {} is malformed ({why}); `keyledger keys \
             rotate-kek` writes it again",
            current::ENTRY
        ),
        (None, revision) => println!(
            "current KEK: version {} ({}){}{}",
            current.kek.version,
            current.kek.kek_id,
            if revision.is_none() {
                " (never rotated)"
            } else {
                ""
            },
            if held.iter().any(|(_, id)| *id == current.kek.kek_id) {
                ""
            } else {
                " (not held here)"
            }
        ),
    }
    let source = d.envelope.source();
    for (version, id) in &held {
        println!(
            "held here: version {version} ({id}) at {}: wraps {} stored keys",
            source.map_or_else(String::new, |s| s.name(*version)),
            census.get(id).copied().unwrap_or(0)
        );
    }
    for (id, n) in census
        .iter()
        .filter(|(id, _)| !held.iter().any(|(_, h)| h == *id))
    {
        println!("not held here: KEK {id} wraps {n} stored keys");
    }
    if let Some(to) = keyring.rewrapping {
        println!(
            "a re-wrap to version {to} began and has not finished: run `keyledger keys rewrap`"
        );
    }
    Ok(())
}
