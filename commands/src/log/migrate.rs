//! Migrating a log written in commit format 1 (before commits were authenticated) to
//! a new stream in format 2.
//!
//! A log cannot be rewritten in place (the stream denies deletes and purges), so the
//! migration copies it: the old stream is retired (it stops capturing
//! `keyledger.events.>` but keeps every message, for the record and for its
//! checkpoints), a new stream takes the subjects, and every commit is copied in order,
//! with the same command, actor, time, version and events, re-linked and sealed with
//! the commit key. Messages that are not commits (foreign) are skipped and reported.
//! The copy is resumable: commits the new stream already holds are not copied again.

use std::collections::HashMap;

use async_nats::jetstream::Context;
use async_nats::jetstream::message::PublishMessage;
use domain::audit::RawEvent;
use domain::chain::{Head, Judged, judge};
use domain::commit::{Commit, CommitKey, Sealed};
use domain::subject::EVENTS_WILDCARD;

use infra::audit::{LogMessage, read_log};
use infra::log::{LogSettings, ensure_event_stream};

/// Messages read from the old stream at a time.
const CHUNK: usize = 1000;

/// Why the migration stopped.
#[derive(Debug, thiserror::Error)]
#[error("migrating the log: {0}")]
pub struct MigrateError(String);

fn err(e: impl std::fmt::Display) -> MigrateError {
    MigrateError(e.to_string())
}

/// What a migration did.
#[derive(Debug, Default)]
pub struct Migrated {
    /// Commits copied now.
    pub copied: u64,
    /// Commits the new stream held already (an earlier, interrupted run).
    pub present: u64,
    /// Messages of the old stream that were not commits: sequence and why.
    pub skipped: Vec<(u64, String)>,
}

/// Where the new stream's copy of an aggregate stands.
struct Target {
    head: Head,
    last_seq: u64,
}

/// Copies the log `from` into the new stream `to` (created with keyledger's settings
/// and `replicas`), sealing every commit with `key`. `progress` sees each old
/// sequence done. Stop keyledger first: while the old stream is retired and the new
/// one not yet complete, the log is incomplete.
pub async fn migrate(
    js: &Context,
    from: &str,
    to: &str,
    replicas: usize,
    key: &CommitKey,
    mut progress: impl FnMut(u64),
) -> Result<Migrated, MigrateError> {
    if from == to {
        return Err(err(
            "--from and --to name the same stream; give the new stream a new name",
        ));
    }
    retire(js, from).await?;
    let settings = LogSettings {
        stream: to.to_owned(),
        replicas,
        ..Default::default()
    };
    ensure_event_stream(js, &settings).await.map_err(err)?;
    let mut targets = copied_so_far(js, to, key).await?;
    let mut sources: HashMap<String, Head> = HashMap::new();
    let mut done = Migrated::default();
    let mut next = 1;
    loop {
        let mut chunk: Vec<LogMessage> = Vec::with_capacity(CHUNK);
        read_log(js, from, None, next, |m| {
            chunk.push(m);
            chunk.len() < CHUNK
        })
        .await
        .map_err(err)?;
        let Some(last) = chunk.last().map(|m| m.seq) else {
            return Ok(done);
        };
        for m in chunk {
            match judge::<RawEvent>(&m.subject, &m.payload, None, sources.get(&m.subject))
                .map_err(|why| err(format!("sequence {} of {from}: {why}", m.seq)))?
            {
                Judged::Foreign(why) => done.skipped.push((m.seq, why)),
                Judged::Next(commit) => {
                    sources.insert(m.subject.clone(), Head::from(&commit));
                    let target = targets.get(&m.subject);
                    if target.is_some_and(|t| t.head.version >= commit.body.version) {
                        done.present += 1;
                    } else {
                        let copied = copy(js, &m.subject, commit, target, key).await?;
                        targets.insert(m.subject.clone(), copied);
                        done.copied += 1;
                    }
                }
            }
            progress(m.seq);
        }
        next = last + 1;
    }
}

/// Stops `from` from capturing new commits, keeping every message it holds.
async fn retire(js: &Context, from: &str) -> Result<(), MigrateError> {
    let mut stream = js.get_stream(from).await.map_err(err)?;
    let mut config = stream.info().await.map_err(err)?.config.clone();
    if config.subjects.iter().any(|s| s == EVENTS_WILDCARD) {
        config.subjects = vec![format!("keyledger.retired.{from}")];
        config.description = Some(format!(
            "keyledger event log in commit format 1, retired: migrated to a new stream \
             ({})",
            config.description.unwrap_or_default()
        ));
        js.update_stream(config).await.map_err(err)?;
    }
    Ok(())
}

/// Where each aggregate's copy stands in `to`, after an interrupted run.
async fn copied_so_far(
    js: &Context,
    to: &str,
    key: &CommitKey,
) -> Result<HashMap<String, Target>, MigrateError> {
    let mut targets = HashMap::new();
    let mut bad = None;
    read_log(js, to, None, 1, |m| {
        match Commit::<RawEvent>::open(&m.payload, key) {
            Ok(commit) => {
                targets.insert(
                    m.subject.clone(),
                    Target {
                        head: Head::from(&commit),
                        last_seq: m.seq,
                    },
                );
                true
            }
            Err(e) => {
                bad = Some(format!("sequence {} of {to}: {e}", m.seq));
                false
            }
        }
    })
    .await
    .map_err(err)?;
    match bad {
        Some(why) => Err(err(format!(
            "the new stream holds what this migration did not write ({why}); give another --to"
        ))),
        None => Ok(targets),
    }
}

/// Appends `commit`, re-linked after `target` and sealed with `key`, to its subject.
async fn copy(
    js: &Context,
    subject: &str,
    commit: Commit<RawEvent>,
    target: Option<&Target>,
    key: &CommitKey,
) -> Result<Target, MigrateError> {
    let Sealed {
        commit: sealed,
        bytes,
    } = commit.body.seal_for_log(target.map(|t| t.head.hash), key);
    let message = PublishMessage::build()
        .payload(bytes.into())
        .expected_last_subject_sequence(target.map_or(0, |t| t.last_seq));
    let ack = js
        .send_publish(subject.to_owned(), message)
        .await
        .map_err(err)?
        .await
        .map_err(err)?;
    Ok(Target {
        head: Head::from(&sealed),
        last_seq: ack.sequence,
    })
}
