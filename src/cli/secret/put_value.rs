//! `keyledger secret put-value`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use api::requests::PutValueBody;
use clap::Args;
use reqwest::Method;

use super::{PayloadFields, read_payload};
use crate::cli::ClientArgs;
use crate::cli::http::{Api, secret_id};

/// Store a new version of a secret's value; it becomes current unless --stage
/// says otherwise. Prints the version id.
#[derive(Debug, Args)]
pub struct PutValue {
    #[command(flatten)]
    client: ClientArgs,
    /// The secret: id, secret_ref, reference or name.
    secret: String,
    /// The payload as text.
    #[arg(long, conflicts_with = "payload_file")]
    payload: Option<String>,
    /// Read the payload from this file (- for stdin).
    #[arg(long)]
    payload_file: Option<PathBuf>,
    /// text/plain or application/octet-stream (default: by content).
    #[arg(long)]
    content_type: Option<String>,
    /// 32 to 64 characters; retrying with the same token and payload is safe.
    #[arg(long)]
    client_request_token: Option<String>,
    /// Stages of the new version: current, pending (repeatable; default current).
    #[arg(long = "stage")]
    stages: Vec<String>,
}

impl PutValue {
    pub async fn run(self) -> Result<()> {
        let Self {
            client,
            secret,
            payload,
            payload_file,
            content_type,
            client_request_token,
            stages,
        } = self;
        let api = Api::new(&client)?;
        let id = secret_id(&secret);
        let Some(bytes) = read_payload(payload, payload_file)? else {
            bail!("give the new value with --payload or --payload-file");
        };
        let payload = PayloadFields::of(&bytes, content_type)?;
        let body = PutValueBody {
            payload: payload.payload,
            payload_content_type: Some(payload.content_type),
            payload_content_encoding: payload.encoding,
            client_request_token,
            stages: (!stages.is_empty()).then_some(stages),
        };
        let response = api
            .send(
                api.request(Method::POST, &format!("/v1/secrets/{id}/versions"))
                    .json(&body),
            )
            .await?;
        let stored: api::responses::VersionStored = response.json().await?;
        println!("{}", stored.version_id.unwrap_or_default());
        Ok(())
    }
}
