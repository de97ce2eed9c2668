//! What opening one commit costs (parse, hash, authenticator), on one core: the work
//! every reader of the log does per message (the projector, the change relay, the
//! checkpointer, `audit verify`, `projections rebuild`). Two commits: a create of a
//! secret with a 1 KiB payload, as `keyledger up` writes them, and a metadata commit
//! as `audit replay-bench` writes them. Prints the median of 5 rounds in ns per
//! commit, for the whole open and for its parts; and, for the create, what sealing it
//! costs the command service (encoding, hash, authenticator, the bytes published).
//!
//! `cargo bench -p domain --bench open`

// A benchmark, like a test, fails loudly on a broken input.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use base64::Engine;
use domain::audit::RawEvent;
use domain::commit::{Commit, CommitKey};
use domain::secret::SecretEvent;
use sha2::{Digest as _, Sha256};

const ROUNDS: usize = 5;
const PER_ROUND: u32 = 100_000;

/// A create as `keyledger up` writes it, its payload 1 KiB (sealed: 1,040 bytes).
const CREATE: &str = include_str!("../tests/golden/commit.v2.json");

/// A commit of `audit replay-bench`: one metadatum set by the scheduler.
const METADATUM: &str = r#"{"actor":{"system":"scheduler"},"aggregate":{"id":"03896512-604f-5bbc-bf97-70e66e8e63f9","kind":"secret","project":"replay-bench"},"at":"2026-12-05T04:07:07.583521Z","command":"secret.metadata.set","events":[{"key":"k4","type":"secret.metadatum_set","v":1,"value":"v499995"}],"hash":"31f2bf8f06ad2566b59d6b7358d22877ed1ffaaf4f2df0caf5f6ee5aebd4e97d","id":"synthetic-499995","mac":"5638c2ea149a44978c0a07b2932f860150a52faf19653e732aa08d3f8bc771c0","prev":"fd5c6e7733921d6e1ff2471dd7c8530e9d57364e9a7ec4208baa185056b1d47d","v":2,"version":5}"#;

fn main() {
    let key = CommitKey::new([7; 32]);
    for (what, json, payload) in [
        ("create, 1 KiB payload", CREATE, true),
        ("metadatum", METADATUM, false),
    ] {
        let bytes = resealed(json, payload, &key);
        let opened = Commit::<RawEvent>::open(&bytes, &key).unwrap();
        println!("{what} ({} bytes):", bytes.len());
        report("  open, events as stored (audit verify)", || {
            black_box(Commit::<RawEvent>::open(black_box(&bytes), &key).unwrap());
        });
        report("  open, typed events (the projector)", || {
            black_box(Commit::<SecretEvent>::open(black_box(&bytes), &key).unwrap());
        });
        report("  JSON scan alone (serde's IgnoredAny)", || {
            black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&bytes)).unwrap());
        });
        report("  SHA-256 of the bytes", || {
            black_box(Sha256::digest(black_box(&bytes)));
        });
        report("  the authenticator's check", || {
            let mac = opened.mac.as_ref().unwrap();
            assert!(key.verifies(black_box(&opened.hash), mac));
        });
        if payload {
            let typed = Commit::<SecretEvent>::open(&bytes, &key).unwrap();
            report("  seal, then encode again (Commit::to_bytes)", || {
                let body = black_box(typed.body.clone());
                black_box(body.seal(typed.prev, &key).to_bytes());
            });
            report(
                "  seal for the log, encoded once (the command service)",
                || {
                    let body = black_box(typed.body.clone());
                    black_box(body.seal_for_log(typed.prev, &key).bytes);
                },
            );
            report("  the commit copied (part of both above)", || {
                black_box(black_box(&typed.body).clone());
            });
        }
    }
}

/// `json` sealed again under `key` (with a 1 KiB payload if `payload`), as written.
fn resealed(json: &str, payload: bool, key: &CommitKey) -> Vec<u8> {
    let mut commit = Commit::<RawEvent>::parse_unverified(json.as_bytes()).unwrap();
    if payload {
        let sealed = base64::engine::general_purpose::STANDARD.encode([0x5a; 1040]);
        for event in &mut commit.body.events {
            let mut value = event.value();
            if let Some(c) = value.get_mut("ciphertext") {
                *c = sealed.clone().into();
            }
            *event = RawEvent::new(&value);
        }
    }
    commit.body.seal(commit.prev, key).to_bytes()
}

/// Prints the median over [`ROUNDS`] of `f`'s time, in ns per call.
fn report(what: &str, mut f: impl FnMut()) {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..PER_ROUND {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(PER_ROUND)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    println!("{what}: {:.0} ns", rounds[ROUNDS / 2]);
}
