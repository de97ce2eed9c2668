//! `keyledger secret create`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};

use super::{add_payload, parse_pair, read_payload};
use crate::cli::ClientArgs;
use crate::cli::http::{Api, secret_id};

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
        let Self {
            client,
            name,
            secret_type,
            algorithm,
            bit_length,
            mode,
            expiration,
            payload,
            payload_file,
            content_type,
            metadata,
            tags,
            owning_service,
        } = self;
        let api = Api::new(&client);
        let mut body = json!({
            "name": name, "secret_type": secret_type, "algorithm": algorithm,
            "bit_length": bit_length, "mode": mode, "expiration": expiration,
            "owning_service": owning_service,
        });
        if !metadata.is_empty() {
            body["metadata"] = json!(metadata.into_iter().collect::<BTreeMap<_, _>>());
        }
        if !tags.is_empty() {
            body["tags"] = json!(tags.into_iter().collect::<BTreeMap<_, _>>());
        }
        if let Some(bytes) = read_payload(payload, payload_file)? {
            add_payload(&mut body, &bytes, content_type)?;
        }
        if let Value::Object(map) = &mut body {
            map.retain(|_, v| !v.is_null());
        }
        let response = api
            .send(api.request(Method::POST, "/v1/secrets").json(&body))
            .await?;
        let seq = response
            .headers()
            .get(api::SEQ)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned();
        let created: api::responses::SecretRef = response.json().await?;
        let reference = created.secret_ref;
        println!("{}", secret_id(&reference));
        eprintln!("created {reference} (log sequence {seq})");
        Ok(())
    }
}
