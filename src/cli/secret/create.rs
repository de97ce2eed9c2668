//! `keyledger secret create`.

use std::path::PathBuf;

use anyhow::Result;
use api::requests::CreateSecretRequest;
use clap::Args;
use reqwest::Method;

use super::{PayloadFields, parse_pair, read_payload};
use crate::cli::ClientArgs;
use crate::cli::http::{Api, secret_id, seq_of};

/// Create a secret. The payload comes from --payload-file (or - for stdin), or
/// --payload (visible in your shell history: prefer a file for real secrets).
#[derive(Debug, Args)]
pub struct Create {
    #[command(flatten)]
    client: ClientArgs,
    /// Name (up to 255 characters).
    #[arg(long)]
    name: Option<String>,
    /// symmetric, public, private, passphrase, certificate or opaque.
    #[arg(long)]
    secret_type: Option<String>,
    /// Informational algorithm, e.g. aes.
    #[arg(long)]
    algorithm: Option<String>,
    /// Informational key length in bits.
    #[arg(long)]
    bit_length: Option<i64>,
    /// Informational mode, e.g. cbc.
    #[arg(long)]
    mode: Option<String>,
    /// ISO-8601 expiration, e.g. 2027-01-31T00:00:00Z.
    #[arg(long)]
    expiration: Option<String>,
    /// The payload as text.
    #[arg(long, conflicts_with = "payload_file")]
    payload: Option<String>,
    /// Read the payload from this file (- for stdin).
    #[arg(long)]
    payload_file: Option<PathBuf>,
    /// text/plain or application/octet-stream; default: text/plain for UTF-8
    /// payloads, application/octet-stream otherwise.
    #[arg(long)]
    content_type: Option<String>,
    /// Metadata as key=value (repeatable).
    #[arg(long = "metadata", value_parser = parse_pair)]
    metadata: Vec<(String, String)>,
    /// Tags as key=value (repeatable).
    #[arg(long = "tag", value_parser = parse_pair)]
    tags: Vec<(String, String)>,
    /// The service that manages the secret (must be your token's service); only
    /// it may change the secret.
    #[arg(long)]
    owning_service: Option<String>,
}

impl Create {
    pub async fn run(self) -> Result<()> {
        let api = Api::new(&self.client)?;
        let payload = read_payload(self.payload, self.payload_file)?
            .map(|bytes| PayloadFields::of(&bytes, self.content_type))
            .transpose()?;
        let (payload, payload_content_type, payload_content_encoding) = match payload {
            Some(p) => (Some(p.payload), Some(p.content_type), p.encoding),
            None => (None, None, None),
        };
        let body = CreateSecretRequest {
            name: self.name,
            secret_type: self.secret_type,
            algorithm: self.algorithm,
            bit_length: self.bit_length,
            mode: self.mode,
            expiration: self.expiration,
            payload,
            payload_content_type,
            payload_content_encoding,
            metadata: (!self.metadata.is_empty()).then(|| self.metadata.into_iter().collect()),
            owning_service: self.owning_service,
            tags: (!self.tags.is_empty()).then(|| self.tags.into_iter().collect()),
            ..Default::default()
        };
        let response = api
            .send(api.request(Method::POST, "/v1/secrets").json(&body))
            .await?;
        let seq = seq_of(&response);
        let created: api::responses::SecretRef = response.json().await?;
        let reference = created.secret_ref;
        println!("{}", secret_id(&reference));
        eprintln!("created {reference} (log sequence {seq})");
        Ok(())
    }
}
