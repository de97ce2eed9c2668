//! `keyledger audit`: the history and the integrity of the log, read
//! from NATS directly (no keyledger service in between, nothing to trust but the log).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, Subcommand};
use domain::audit::{HistoryFilter, RawEvent};
use domain::subject::events_filter;
use domain::timestamp::Timestamp;
use serde_json::json;

use super::LogArgs;
use super::auditor::connect;

/// Where the log is.
#[derive(Debug, Clone, Args)]
pub struct Source {
    /// NATS URL of the event stream (an account that may read it), e.g.
    /// nats://keyledger:PASSWORD@127.0.0.1:4222 for `keyledger up`'s server.
    #[arg(long, env = "KEYLEDGER_NATS_URL")]
    pub nats_url: String,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Who did what, when: every event, filtered; a table, or JSON lines with --json.
    Log {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        trust: super::trust::TrustArgs,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Only this secret, container or order (its id).
        #[arg(long)]
        id: Option<String>,
        /// Only commits by this actor (a user, or system:scheduler, system:order worker).
        #[arg(long)]
        actor: Option<String>,
        /// Only events of this type, e.g. secret.acl_set.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Only commits at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only commits before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Only sequences from this one.
        #[arg(long)]
        from_seq: Option<u64>,
        /// Only sequences up to this one.
        #[arg(long)]
        to_seq: Option<u64>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Who read which payload, when, from where, and whether it was allowed: the access
    /// records, filtered; a table, or JSON lines with --json.
    Access {
        /// NATS URL (an account that may read the access stream).
        #[arg(long, env = "KEYLEDGER_NATS_URL")]
        nats_url: String,
        /// The commit key file (keyledger's commit.key): records keyledger did not
        /// write are named and left out. Without it, they cannot be told apart.
        #[arg(long, env = "KEYLEDGER_COMMIT_KEY_FILE")]
        commit_key_file: Option<PathBuf>,
        /// Only reads by this user.
        #[arg(long)]
        user: Option<String>,
        /// Only reads of this secret (its id).
        #[arg(long)]
        id: Option<String>,
        /// Only reads at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only reads before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Only denied reads.
        #[arg(long)]
        denied: bool,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The state of a project (or of one secret, container or order) as it was at a
    /// time or sequence, rebuilt by replaying the log up to there. With --id and
    /// --readers: who could read that secret then.
    State {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        trust: super::trust::TrustArgs,
        /// An RFC 3339 time, or a stream sequence.
        #[arg(long)]
        at: String,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Only this secret, container or order (its id).
        #[arg(long)]
        id: Option<String>,
        /// Say who could read the secret (--id) at that point, and why.
        #[arg(long, requires = "id")]
        readers: bool,
        /// Say what this user could read at that point, and why.
        #[arg(long, value_name = "USER", conflicts_with = "readers")]
        readable_by: Option<String>,
    },
    /// Measure replay: append N synthetic events straight to the stream, then verify
    /// and replay the whole stream, reporting events per second. Use a scratch data
    /// directory: the events stay.
    ReplayBench {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        data: super::DataDirArgs,
        #[command(flatten)]
        commit_key: super::CommitKeyArgs,
        /// Events to append.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Secrets they are spread over.
        #[arg(long, default_value_t = 10_000)]
        aggregates: u64,
    },
    /// Write the signed checkpoints ({checkpoint: note}) and the whole log ({seq,
    /// subject, commit: base64}) as JSON lines, to verify a copy elsewhere.
    Export {
        #[command(flatten)]
        source: Source,
    },
    /// Check every commit's hash, every aggregate's chain and the sequence's continuity,
    /// and the log against every signed checkpoint (with --public-key); name the first
    /// bad sequence and every message keyledger did not write. Exits non-zero on
    /// failure, or when foreign messages are found that --accept-foreign does not list.
    Verify {
        /// NATS URL of the event stream.
        #[arg(long, env = "KEYLEDGER_NATS_URL", required_unless_present = "file")]
        nats_url: Option<String>,
        #[command(flatten)]
        log: LogArgs,
        /// Verify an export instead of the live stream.
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        keys: super::proof::PublicKeys,
        /// A checkpoint saved earlier (keyledger audit checkpoint > FILE) that the log
        /// must still match; repeatable.
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        /// The commit key file (keyledger's commit.key), to check every commit's
        /// authenticator; without it, foreign messages are known from the checkpoints.
        #[arg(long, env = "KEYLEDGER_COMMIT_KEY_FILE")]
        commit_key_file: Option<PathBuf>,
        /// Foreign messages already investigated, e.g. 17,40-42: found, they are
        /// reported but do not fail the verification.
        #[arg(long, value_name = "SEQUENCES")]
        accept_foreign: Option<String>,
        /// Checkpoints not signed by a trusted key, already investigated (their
        /// sequences in the checkpoint stream, or numbers in an export).
        #[arg(long, value_name = "SEQUENCES")]
        accept_foreign_checkpoints: Option<String>,
    },
    /// Print the latest signed checkpoint, to keep: a later `verify --checkpoint FILE`
    /// shows the log still holds what it held then.
    Checkpoint {
        /// NATS URL (an account that may read the checkpoint stream).
        #[arg(long, env = "KEYLEDGER_NATS_URL")]
        nats_url: String,
        #[command(flatten)]
        log: LogArgs,
        #[command(flatten)]
        keys: super::proof::PublicKeys,
    },
    /// Print, as JSON, a proof that the commit at SEQUENCE is in the log the latest
    /// checkpoint signs; `audit check-proof` checks it with only the public key.
    Prove {
        #[command(flatten)]
        source: Source,
        /// The commit's stream sequence.
        sequence: u64,
        #[command(flatten)]
        keys: super::proof::PublicKeys,
        /// Prove against this saved checkpoint instead of the latest.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
    /// Check a proof from `audit prove` (a file, or - for standard input) with only the
    /// checkpoint public key; no NATS needed.
    CheckProof {
        /// The proof.
        file: PathBuf,
        #[command(flatten)]
        keys: super::proof::PublicKeys,
    },
}

/// A list of sequences and ranges, e.g. `17,40-42`, given as `flag`.
fn sequences(flag: &str, list: Option<String>) -> Result<domain::checkpoint::Foreign> {
    let Some(list) = list else {
        return Ok(Default::default());
    };
    domain::checkpoint::Foreign::parse(&list).with_context(|| {
        format!("{flag} {list:?}: give ascending sequences and ranges, e.g. 17,40-42")
    })
}

fn time(field: &str, s: Option<String>) -> Result<Option<Timestamp>> {
    s.map(|s| Timestamp::parse_iso8601(field, &s).map_err(|r| anyhow::anyhow!(r.message)))
        .transpose()
}

pub async fn run(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Log {
            source,
            trust,
            project,
            id,
            actor,
            event_type,
            since,
            until,
            from_seq,
            to_seq,
            json,
        } => {
            let filter = HistoryFilter {
                actor,
                event_type,
                since: time("--since", since)?,
                until: time("--until", until)?,
                from_seq,
                to_seq,
            };
            let subject = events_filter(project.as_deref(), None, id.as_deref());
            let js = connect(&source.nats_url).await?;
            let mut trust = super::trust::Trust::load(&trust, &js, &source.log.stream).await?;
            let mut out = std::io::stdout().lock();
            if !json {
                writeln!(
                    out,
                    "{:>6}  {:<27}  {:<16}  {:<24}  {:<36}  EVENT",
                    "SEQ", "AT", "ACTOR", "COMMAND", "AGGREGATE"
                )?;
            }
            let mut failed = None;
            // Every chain is followed from its start, so the filter's range applies to
            // what is printed, not to what is read.
            infra::audit::read_log(&js, &source.log.stream, Some(subject), 1, |m| {
                if to_seq.is_some_and(|t| m.seq > t) {
                    return false;
                }
                let commit = match trust.next::<RawEvent>(m.seq, &m.subject, &m.payload) {
                    Ok(Some(c)) => c,
                    Ok(None) => return true,
                    Err(e) => {
                        failed = Some(format!("sequence {}: {e}", m.seq));
                        return false;
                    }
                };
                for entry in filter.entries(m.seq, &commit) {
                    let line = if json {
                        entry.to_string()
                    } else {
                        format!(
                            "{:>6}  {:<27}  {:<16}  {:<24}  {:<36}  {}",
                            entry["seq"].as_u64().unwrap_or_default(),
                            entry["at"].as_str().unwrap_or_default(),
                            entry["actor"].as_str().unwrap_or_default(),
                            entry["command"].as_str().unwrap_or_default(),
                            entry["aggregate"]["id"].as_str().unwrap_or_default(),
                            entry["event"]["type"].as_str().unwrap_or_default(),
                        )
                    };
                    if writeln!(out, "{line}").is_err() {
                        return false;
                    }
                }
                true
            })
            .await?;
            if let Some(why) = failed {
                bail!(
                    "the log holds a commit that does not read: {why}; run keyledger audit verify"
                );
            }
        }
        AuditCommand::Access {
            nats_url,
            commit_key_file,
            user,
            id,
            since,
            until,
            denied,
            json,
        } => {
            let (since, until) = (time("--since", since)?, time("--until", until)?);
            let js = connect(&nats_url).await?;
            let mut out = std::io::stdout().lock();
            if !json {
                writeln!(
                    out,
                    "{:<27}  {:<16}  {:<36}  {:<8}  {:<15}  WHY",
                    "AT", "USER", "SECRET", "ALLOWED", "SOURCE"
                )?;
            }
            let key = commit_key_file
                .as_deref()
                .map(infra::keyfile::existing_commit_key)
                .transpose()?;
            if key.is_none() {
                eprintln!(
                    "note: authenticity not checked: pass --commit-key-file to leave out \
                     records keyledger did not write"
                );
            }
            infra::audit::read_log(&js, api::access_log::STREAM, None, 1, |m| {
                if let Some(key) = &key
                    && !api::access_log::authentic(key, m.headers.as_ref(), &m.payload)
                {
                    eprintln!(
                        "sequence {} of {}: not written by keyledger (no valid \
                         authenticator); its records are left out",
                        m.seq,
                        api::access_log::STREAM
                    );
                    return true;
                }
                let Ok(records) =
                    serde_json::from_slice::<Vec<api::access_log::AccessRecord>>(&m.payload)
                else {
                    eprintln!(
                        "sequence {} of {}: not a batch of access records; left out",
                        m.seq,
                        api::access_log::STREAM
                    );
                    return true;
                };
                for r in records {
                    let at = Timestamp::parse_iso8601("at", &r.at).ok();
                    let keep = user.as_ref().is_none_or(|u| &r.user == u)
                        && id.as_ref().is_none_or(|i| &r.secret == i)
                        && (!denied || !r.allowed)
                        && since.is_none_or(|s| at.is_some_and(|a| a >= s))
                        && until.is_none_or(|u| at.is_some_and(|a| a < u));
                    if !keep {
                        continue;
                    }
                    let line = if json {
                        serde_json::to_string(&r).unwrap_or_default()
                    } else {
                        format!(
                            "{:<27}  {:<16}  {:<36}  {:<8}  {:<15}  {}",
                            r.at,
                            r.user,
                            r.secret,
                            r.allowed,
                            r.source.clone().unwrap_or_default(),
                            r.reason.clone().unwrap_or_default()
                        )
                    };
                    if writeln!(out, "{line}").is_err() {
                        return false;
                    }
                }
                true
            })
            .await?;
        }
        AuditCommand::State {
            source,
            trust,
            at,
            project,
            id,
            readers,
            readable_by,
        } => {
            let (until_seq, until_time) = match at.parse::<u64>() {
                Ok(seq) => (Some(seq), None),
                Err(_) => (None, time("--at", Some(at.clone()))?),
            };
            let subject = events_filter(project.as_deref(), None, id.as_deref());
            let js = connect(&source.nats_url).await?;
            let mut trust = super::trust::Trust::load(&trust, &js, &source.log.stream).await?;
            let mut replay = super::replay::Replay::default();
            let progress = super::progress::Progress::new("replayed");
            let mut failed = None;
            infra::audit::read_log(&js, &source.log.stream, Some(subject), 1, |m| {
                if until_seq.is_some_and(|s| m.seq > s) {
                    return false;
                }
                match replay.apply(m.seq, &m.subject, &m.payload, until_time, &mut trust) {
                    Ok(true) => {}
                    Ok(false) => return false,
                    Err(e) => {
                        failed = Some(format!("sequence {}: {e}", m.seq));
                        return false;
                    }
                }
                progress.at(replay.commits);
                true
            })
            .await?;
            progress.done();
            if let Some(why) = failed {
                bail!(
                    "the log holds a commit that does not read: {why}; run keyledger audit verify"
                );
            }
            let value = if let Some(user) = readable_by {
                replay.readable_by(&user, until_time)
            } else if readers {
                let id = id.unwrap_or_default();
                replay
                    .readers(&id, until_time)
                    .ok_or_else(|| anyhow::anyhow!("no secret {id} existed at {at}"))?
            } else {
                replay.to_json()
            };
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        AuditCommand::ReplayBench {
            source,
            data,
            commit_key,
            events,
            aggregates,
        } => {
            super::replay_bench::run(
                &source.nats_url,
                &source.log.stream,
                commit_key.load_or_create(&data)?,
                events,
                aggregates,
            )
            .await?;
        }
        AuditCommand::Export { source } => {
            let js = connect(&source.nats_url).await?;
            // Checkpoints first: the log read after them covers every one.
            let checkpoints = commands::checkpoints::read_all(&js, &source.log.stream).await?;
            let mut out = std::io::stdout().lock();
            for (_, note) in checkpoints {
                writeln!(out, "{}", json!({ "checkpoint": note }))?;
            }
            infra::audit::read_log(&js, &source.log.stream, None, 1, |m| {
                let line =
                    json!({"seq": m.seq, "subject": m.subject, "commit": B64.encode(&m.payload)});
                writeln!(out, "{line}").is_ok()
            })
            .await?;
        }
        AuditCommand::Verify {
            nats_url,
            log,
            file,
            keys,
            checkpoints,
            commit_key_file,
            accept_foreign,
            accept_foreign_checkpoints,
        } => {
            let origin = match (file, nats_url) {
                (Some(path), _) => super::verify::Origin::File(path),
                (None, Some(url)) => super::verify::Origin::Nats {
                    js: Box::new(connect(&url).await?),
                    stream: log.stream,
                },
                (None, None) => bail!("give --nats-url or --file"),
            };
            let trust = super::verify::Trusted {
                keys,
                saved: checkpoints,
                commit_key: commit_key_file
                    .as_deref()
                    .map(infra::keyfile::existing_commit_key)
                    .transpose()?,
                accepted: sequences("--accept-foreign", accept_foreign)?,
                accepted_checkpoints: sequences(
                    "--accept-foreign-checkpoints",
                    accept_foreign_checkpoints,
                )?,
            };
            super::verify::run(origin, &trust).await?;
        }
        AuditCommand::Checkpoint {
            nats_url,
            log,
            keys,
        } => {
            print!(
                "{}",
                super::proof::latest(&nats_url, &log.stream, &keys).await?
            );
        }
        AuditCommand::Prove {
            source,
            sequence,
            keys,
            checkpoint,
        } => {
            super::proof::prove(
                &source.nats_url,
                &source.log.stream,
                sequence,
                &keys,
                checkpoint,
            )
            .await?;
        }
        AuditCommand::CheckProof { file, keys } => super::proof::check(&file, &keys)?,
    }
    Ok(())
}
