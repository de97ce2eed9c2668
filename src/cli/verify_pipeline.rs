//! `audit verify` on threads of its own: the reader (NATS or an export) hands messages
//! on in batches, one thread opens them (parse, SHA-256, MAC: most of the work, and
//! independent of every other message) and another checks them in order (chains,
//! the Merkle tree, checkpoints). On one thread, verifying a million commits from an
//! export took 7.6 to 8.2 s, about two thirds of it opening.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use bytes::Bytes;
use domain::audit::{LogVerifier, Opened, Violation};

use super::progress::Progress;

/// Messages per hand-over between the threads, and the bytes after which a hand-over
/// goes with fewer: anyone who can publish to the event stream chooses how large its
/// messages are, up to the server's limit.
const BATCH: usize = 256;
const BATCH_BYTES: usize = 1 << 20;
/// Hand-overs each thread may run ahead of the next: the threads hold at most
/// `2 * AHEAD + 3` hand-overs between them (each at most `BATCH_BYTES` and one
/// message), and the reader reads at most that far past a violation.
const AHEAD: usize = 2;

/// One message of the log.
struct Message {
    seq: u64,
    subject: String,
    bytes: Bytes,
}

/// The verifier, running.
pub struct Pipeline {
    batch: Vec<Message>,
    batch_bytes: usize,
    to_open: Option<SyncSender<Vec<Message>>>,
    opener: JoinHandle<()>,
    checker: JoinHandle<Checked>,
}

/// What checking ended with: the verifier, and the first violation, if any.
pub type Checked = (LogVerifier, Option<Violation>);

impl Pipeline {
    /// Starts the threads; `progress` counts the messages checked.
    pub fn start(mut verifier: LogVerifier, progress: Progress) -> std::io::Result<Self> {
        let (to_open, opening) = sync_channel::<Vec<Message>>(AHEAD);
        let (to_check, checking) = sync_channel::<Vec<(Message, Opened)>>(AHEAD);
        let open = verifier.opener();
        let opener = std::thread::Builder::new()
            .name("verify-open".into())
            .spawn(move || {
                for batch in opening {
                    let opened = batch
                        .into_iter()
                        .map(|m| {
                            let opened = open(&m.bytes);
                            (m, opened)
                        })
                        .collect();
                    // The checker stopped at a violation: nothing more is wanted.
                    if to_check.send(opened).is_err() {
                        return;
                    }
                }
            })?;
        let checker = std::thread::Builder::new()
            .name("verify-check".into())
            .spawn(move || {
                let violation = check_all(&mut verifier, &progress, checking);
                progress.done();
                (verifier, violation)
            })?;
        Ok(Self {
            batch: Vec::with_capacity(BATCH),
            batch_bytes: 0,
            to_open: Some(to_open),
            opener,
            checker,
        })
    }

    /// Hands on the message at `seq`; `false` once the checks have stopped at a
    /// violation, so reading may stop too.
    pub fn push(&mut self, seq: u64, subject: String, bytes: Bytes) -> bool {
        self.batch_bytes += bytes.len();
        self.batch.push(Message {
            seq,
            subject,
            bytes,
        });
        if self.batch.len() < BATCH && self.batch_bytes < BATCH_BYTES {
            return true;
        }
        self.send()
    }

    fn send(&mut self) -> bool {
        self.batch_bytes = 0;
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.to_open
            .as_ref()
            .is_some_and(|to_open| to_open.send(batch).is_ok())
    }

    /// Checks what is left and waits for the threads.
    pub fn finish(mut self) -> anyhow::Result<Checked> {
        if !self.batch.is_empty() {
            self.send();
        }
        // The opener ends once its input does, and the checker once the opener's
        // output does.
        self.to_open = None;
        let opened = self.opener.join();
        let checked = self.checker.join();
        match (opened, checked) {
            (Ok(()), Ok(checked)) => Ok(checked),
            _ => anyhow::bail!(
                "a verification thread failed (a bug in keyledger, not a verdict on the log)"
            ),
        }
    }
}

/// Checks every opened message in order, up to the first violation.
fn check_all(
    verifier: &mut LogVerifier,
    progress: &Progress,
    checking: Receiver<Vec<(Message, Opened)>>,
) -> Option<Violation> {
    for batch in checking {
        for (m, opened) in batch {
            if let Err(v) = verifier.check_opened(m.seq, &m.subject, &m.bytes, opened) {
                return Some(v);
            }
            progress.at(m.seq);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::audit::RawEvent;
    use domain::commit::{AggregateRef, CommitKey, Digest, NewCommit};
    use domain::ids::{AggregateId, CommandId, ProjectId};
    use domain::principal::Actor;
    use domain::subject::AggregateKind;
    use domain::timestamp::Timestamp;

    /// A log of `len` messages over 10 aggregates: (seq, subject, bytes). Every 97th
    /// message is junk on an aggregate's subject (foreign, skipped); the commit at
    /// `broken` (if any) is an authentic one that skips two versions.
    fn log(key: &CommitKey, len: u64, broken: Option<u64>) -> Vec<(u64, String, Bytes)> {
        let mut heads: Vec<(u64, Option<Digest>)> = vec![(0, None); 10];
        (1..=len)
            .map(|seq| {
                let a = (seq % 10) as usize;
                let aggregate = AggregateRef {
                    kind: AggregateKind::Secret,
                    project: ProjectId::parse("p1").unwrap(),
                    id: AggregateId::parse(&format!("a{a}")).unwrap(),
                };
                let subject = aggregate.subject();
                if seq % 97 == 0 {
                    return (seq, subject, Bytes::from_static(b"{\"junk\":1}"));
                }
                let (version, prev) = heads[a];
                let skip = if broken == Some(seq) { 2 } else { 0 };
                let commit = NewCommit {
                    id: CommandId::parse(&format!("c{seq}")).unwrap(),
                    aggregate,
                    version: version + 1 + skip,
                    command: "secret.metadata.set".into(),
                    actor: Actor::scheduler(),
                    at: Timestamp::from_unix_millis(1_800_000_000_000).unwrap(),
                    events: vec![RawEvent::new(
                        &serde_json::json!({"type": "x", "v": 1, "n": seq}),
                    )],
                }
                .seal(prev, key);
                heads[a] = (version + 1 + skip, Some(commit.hash));
                (seq, subject, commit.to_bytes().into())
            })
            .collect()
    }

    fn verifier(key: Option<&CommitKey>) -> LogVerifier {
        LogVerifier::with_checkpoints(Vec::new(), key.cloned())
    }

    /// Checked on one thread, message by message: the verifier and the first violation.
    fn one_by_one(key: Option<&CommitKey>, log: &[(u64, String, Bytes)]) -> Checked {
        let mut v = verifier(key);
        for (seq, subject, bytes) in log {
            if let Err(violation) = v.check(*seq, subject, bytes) {
                return (v, Some(violation));
            }
        }
        (v, None)
    }

    /// Pushes the log through the pipeline; also how many messages it took before
    /// saying to stop.
    fn through_pipeline(key: Option<&CommitKey>, log: &[(u64, String, Bytes)]) -> (Checked, usize) {
        let mut pipeline = Pipeline::start(verifier(key), Progress::new("verified")).unwrap();
        let taken = log
            .iter()
            .take_while(|(seq, subject, bytes)| pipeline.push(*seq, subject.clone(), bytes.clone()))
            .count();
        (pipeline.finish().unwrap(), taken)
    }

    /// Many hand-overs' worth of an intact log, with the commit key and without: the
    /// same commits, foreign messages and Merkle root as checking each message in turn.
    #[test]
    fn a_log_verified_on_threads_reads_as_one_verified_in_turn() {
        let key = CommitKey::new([5; 32]);
        let log = log(&key, 20 * BATCH as u64 + 17, None);
        for key in [Some(&key), None] {
            let ((piped, violation), taken) = through_pipeline(key, &log);
            let (turn, none) = one_by_one(key, &log);
            assert!(
                violation.is_none() && none.is_none(),
                "{violation:?} {none:?}"
            );
            assert_eq!(taken, log.len());
            assert_eq!(piped.commits(), turn.commits());
            assert_eq!(piped.messages(), log.len() as u64);
            assert_eq!(piped.root(), turn.root());
            let seqs = |v: &LogVerifier| v.foreign().iter().map(|f| f.seq).collect::<Vec<_>>();
            assert_eq!(seqs(&piped), seqs(&turn));
            assert_eq!(seqs(&piped).len(), log.len() / 97);
        }
    }

    /// A violation in the last, partial hand-over is found too.
    #[test]
    fn a_violation_in_the_last_hand_over_is_found() {
        let key = CommitKey::new([5; 32]);
        let broken = 3 * BATCH as u64 + 5;
        let log = log(&key, 3 * BATCH as u64 + 10, Some(broken));
        let ((_, violation), taken) = through_pipeline(Some(&key), &log);
        assert_eq!(taken, log.len());
        assert_eq!(violation.map(|v| v.seq), Some(broken));
    }

    /// A broken chain deep in a long log is the violation reported, exactly as
    /// checked in turn, and the reader is told to stop long before the log's end.
    #[test]
    fn the_first_violation_stops_the_reader() {
        let key = CommitKey::new([5; 32]);
        let broken = 5 * BATCH as u64 + 3;
        let log = log(&key, 200 * BATCH as u64, Some(broken));
        let ((piped, violation), taken) = through_pipeline(Some(&key), &log);
        let (turn, expected) = one_by_one(Some(&key), &log);
        let (violation, expected) = (violation.unwrap(), expected.unwrap());
        assert_eq!(violation.seq, broken);
        assert_eq!(violation.reason, expected.reason);
        assert!(
            violation.reason.contains("are missing"),
            "{}",
            violation.reason
        );
        assert_eq!(piped.commits(), turn.commits());
        // At most what the threads hold between them reads past the violation.
        assert!(
            taken <= broken as usize + (2 * AHEAD + 4) * BATCH,
            "read {taken} messages"
        );
    }
}
