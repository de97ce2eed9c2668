//! `keyledger secret get`.

use std::io::Write as _;

use anyhow::Result;
use api::responses::{Secret, SecretVersion};
use clap::Args;
use reqwest::Method;
use serde::Serialize;

use crate::cli::ClientArgs;
use crate::cli::http::{Api, secret_id};
use crate::cli::output::{print_fields, print_json};

/// Show a secret's metadata, or with --payload write its payload to stdout.
#[derive(Debug, Args)]
pub struct Get {
    #[command(flatten)]
    client: ClientArgs,
    /// The secret: id, secret_ref, reference or name.
    secret: String,
    /// Write the decrypted payload (raw bytes) to stdout.
    #[arg(long)]
    payload: bool,
    /// A version (id) or stage (current, previous, pending) instead of the secret.
    #[arg(long)]
    version: Option<String>,
    /// Print the JSON the API returned.
    #[arg(long)]
    json: bool,
}

impl Get {
    pub async fn run(self) -> Result<()> {
        let Self {
            client,
            secret,
            payload,
            version,
            json,
        } = self;
        let api = Api::new(&client)?;
        let id = secret_id(&secret);
        let base = match &version {
            Some(v) => format!("/v1/secrets/{id}/versions/{}", secret_id(v)),
            None => format!("/v1/secrets/{id}"),
        };
        if payload {
            let response = api
                .send(api.request(Method::GET, &format!("{base}/payload")))
                .await?;
            let bytes = response.bytes().await?;
            std::io::stdout().write_all(&bytes)?;
            return Ok(());
        }
        let response = api
            .send(
                api.request(Method::GET, &base)
                    .header("Accept", "application/json"),
            )
            .await?;
        match version {
            Some(_) => show(&response.json::<SecretVersion>().await?, json),
            None => show(&response.json::<Secret>().await?, json),
        }
    }
}

/// Prints `shown` as `key value` lines, or with `json` as pretty JSON; either way by
/// key, in the order of a JSON object read back (`serde_json::Value`).
fn show(shown: &impl Serialize, json: bool) -> Result<()> {
    if json {
        print_json(shown)
    } else {
        print_fields(shown)
    }
}
