//! `keyledger secret create|get|list|delete|restore|put-value|versions|stage`, through
//! the HTTP API. A secret is named by its id, its `secret_ref`, its reference
//! (`krn:keyledger:…`) or its name.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use api::responses::Secret;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Subcommand;
use infra::protocol::PayloadField;
use reqwest::Method;

use super::http::{Api, secret_id};

mod create;
mod delete;
mod get;
mod list;
mod put_value;
mod restore;
mod stage;
mod versions;

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create a secret. The payload comes from --payload-file (or - for stdin), or
    /// --payload (visible in your shell history: prefer a file for real secrets).
    Create(create::Create),
    /// Show a secret's metadata, or with --payload write its payload to stdout.
    Get(get::Get),
    /// List the project's secrets.
    List(list::List),
    /// Delete a secret: at once, destroying its keys (as Barbican), or after a
    /// recovery window during which `restore` undoes it.
    Delete(delete::Delete),
    /// Undo a scheduled deletion.
    Restore(restore::Restore),
    /// Store a new version of a secret's value; it becomes current unless --stage
    /// says otherwise. Prints the version id.
    PutValue(put_value::PutValue),
    /// List a secret's versions and their stages.
    Versions(versions::Versions),
    /// Move a stage to a version (and off the version it is on).
    Stage(stage::Stage),
}

/// A payload as a request carries it: text as-is, anything else base64.
struct PayloadFields {
    payload: PayloadField,
    content_type: String,
    encoding: Option<String>,
}

impl PayloadFields {
    fn of(bytes: &[u8], content_type: Option<String>) -> Result<Self> {
        let text = std::str::from_utf8(bytes).ok();
        let content_type = content_type.unwrap_or_else(|| {
            if text.is_some() {
                "text/plain"
            } else {
                "application/octet-stream"
            }
            .into()
        });
        if content_type.starts_with("text/plain") {
            let Some(text) = text else {
                bail!("the payload is not UTF-8 text; use --content-type application/octet-stream");
            };
            Ok(Self {
                payload: PayloadField::from(text.to_owned()),
                content_type,
                encoding: None,
            })
        } else {
            Ok(Self {
                payload: PayloadField::from(B64.encode(bytes)),
                content_type,
                encoding: Some("base64".to_owned()),
            })
        }
    }
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

fn read_payload(payload: Option<String>, file: Option<PathBuf>) -> Result<Option<Vec<u8>>> {
    match (payload, file) {
        (Some(text), _) => Ok(Some(text.into_bytes())),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading the payload from stdin")?;
            Ok(Some(buf))
        }
        (None, Some(path)) => std::fs::read(&path)
            .map(Some)
            .with_context(|| format!("reading the payload from {}", path.display())),
        (None, None) => Ok(None),
    }
}

pub async fn run(command: SecretCommand) -> Result<()> {
    match command {
        SecretCommand::Create(c) => c.run().await,
        SecretCommand::Get(c) => c.run().await,
        SecretCommand::List(c) => c.run().await,
        SecretCommand::Delete(c) => c.run().await,
        SecretCommand::Restore(c) => c.run().await,
        SecretCommand::PutValue(c) => c.run().await,
        SecretCommand::Versions(c) => c.run().await,
        SecretCommand::Stage(c) => c.run().await,
    }
}

/// The UUID of the secret `given` names (an id, a `secret_ref`, a reference or a name).
async fn resolve_id(api: &Api, given: &str) -> Result<String> {
    let segment = secret_id(given);
    if uuid::Uuid::try_parse(&segment).is_ok() {
        return Ok(segment);
    }
    let response = api
        .send(
            api.request(Method::GET, &format!("/v1/secrets/{}", secret_id(given)))
                .header("Accept", "application/json"),
        )
        .await?;
    let secret: Secret = response.json().await.with_context(|| {
        format!("the API's answer for secret {given:?} does not read as a secret")
    })?;
    Ok(secret_id(&secret.secret_ref))
}
