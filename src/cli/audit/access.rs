//! `keyledger audit access`.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use domain::timestamp::Timestamp;
use sha2::Digest as _;

use super::time;
use crate::cli::auditor::connect;

/// Who read which payload, when, from where, and whether it was allowed: the access
/// records, filtered; a table, or JSON lines with --json.
#[derive(Debug, Args)]
pub struct Access {
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
}

impl Access {
    pub async fn run(self) -> Result<()> {
        let Self {
            nats_url,
            commit_key_file,
            user,
            id,
            since,
            until,
            denied,
            json,
        } = self;
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
                "note: authenticity not checked: records published behind keyledger's back \
                 (by a holder of its NATS credentials) are listed as if real; pass \
                 --commit-key-file to leave them out"
            );
        }
        // A batch is stored once: a second copy (valid authenticator and all) was
        // published again by someone else, and would count its reads twice.
        let mut seen = std::collections::HashMap::<[u8; 32], u64>::new();
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
            let digest: [u8; 32] = sha2::Sha256::digest(&m.payload).into();
            if let Some(first) = seen.get(&digest) {
                eprintln!(
                    "sequence {} of {}: a copy of the batch at sequence {first}, published \
                     again; its records are left out",
                    m.seq,
                    api::access_log::STREAM
                );
                return true;
            }
            seen.insert(digest, m.seq);
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
        Ok(())
    }
}
