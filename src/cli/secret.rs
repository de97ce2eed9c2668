//! `keyledger secret create|get|list|delete`, through the HTTP API.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::ClientArgs;
use super::http::{Api, secret_id};

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create a secret. The payload comes from --payload-file (or - for stdin), or
    /// --payload (visible in your shell history: prefer a file for real secrets).
    Create {
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
    },
    /// Show a secret's metadata, or with --payload write its payload to stdout.
    Get {
        #[command(flatten)]
        client: ClientArgs,
        /// The secret's id or secret_ref.
        secret: String,
        /// Write the decrypted payload (raw bytes) to stdout.
        #[arg(long)]
        payload: bool,
        /// Print the JSON the API returned.
        #[arg(long)]
        json: bool,
    },
    /// List the project's secrets.
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// Only secrets with this name.
        #[arg(long)]
        name: Option<String>,
        /// Only secrets of this type.
        #[arg(long)]
        secret_type: Option<String>,
        /// Page size (1 to 100).
        #[arg(long, default_value_t = 10)]
        limit: u32,
        /// Secrets to skip.
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// Only secrets shared with you through their ACL, from any project.
        #[arg(long)]
        acl_only: bool,
        /// Print the JSON the API returned.
        #[arg(long)]
        json: bool,
    },
    /// Delete a secret; its keys are destroyed at once.
    Delete {
        #[command(flatten)]
        client: ClientArgs,
        /// The secret's id or secret_ref.
        secret: String,
    },
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
        SecretCommand::Create {
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
        } => {
            let api = Api::new(&client);
            let mut body = json!({
                "name": name, "secret_type": secret_type, "algorithm": algorithm,
                "bit_length": bit_length, "mode": mode, "expiration": expiration,
            });
            if !metadata.is_empty() {
                body["metadata"] = json!(metadata.into_iter().collect::<BTreeMap<_, _>>());
            }
            if let Some(bytes) = read_payload(payload, payload_file)? {
                let text = std::str::from_utf8(&bytes).ok();
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
                        bail!(
                            "the payload is not UTF-8 text; use --content-type application/octet-stream"
                        );
                    };
                    body["payload"] = json!(text);
                } else {
                    body["payload"] = json!(B64.encode(&bytes));
                    body["payload_content_encoding"] = json!("base64");
                }
                body["payload_content_type"] = json!(content_type);
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
            let created: Value = response.json().await?;
            let reference = created["secret_ref"].as_str().unwrap_or_default();
            println!("{}", secret_id(reference));
            eprintln!("created {reference} (log sequence {seq})");
        }
        SecretCommand::Get {
            client,
            secret,
            payload,
            json,
        } => {
            let api = Api::new(&client);
            let id = secret_id(&secret);
            if payload {
                let response = api
                    .send(api.request(Method::GET, &format!("/v1/secrets/{id}/payload")))
                    .await?;
                let bytes = response.bytes().await?;
                std::io::stdout().write_all(&bytes)?;
                return Ok(());
            }
            let response = api
                .send(
                    api.request(Method::GET, &format!("/v1/secrets/{id}"))
                        .header("Accept", "application/json"),
                )
                .await?;
            let value: Value = response.json().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print_fields(&value);
            }
        }
        SecretCommand::List {
            client,
            name,
            secret_type,
            limit,
            offset,
            acl_only,
            json,
        } => {
            let api = Api::new(&client);
            let mut query = vec![("limit", limit.to_string()), ("offset", offset.to_string())];
            query.extend(name.map(|n| ("name", n)));
            query.extend(secret_type.map(|t| ("secret_type", t)));
            if acl_only {
                query.push(("acl_only", "true".to_owned()));
            }
            let response = api
                .send(api.request(Method::GET, "/v1/secrets").query(&query))
                .await?;
            let value: Value = response.json().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(());
            }
            println!("{:<36}  {:<12}  {:<27}  NAME", "ID", "TYPE", "CREATED");
            for s in value["secrets"].as_array().into_iter().flatten() {
                println!(
                    "{:<36}  {:<12}  {:<27}  {}",
                    secret_id(s["secret_ref"].as_str().unwrap_or_default()),
                    s["secret_type"].as_str().unwrap_or_default(),
                    s["created"].as_str().unwrap_or_default(),
                    s["name"].as_str().unwrap_or("-"),
                );
            }
            eprintln!(
                "{} of {} shown",
                value["secrets"].as_array().map_or(0, Vec::len),
                value["total"]
            );
        }
        SecretCommand::Delete { client, secret } => {
            let api = Api::new(&client);
            let id = secret_id(&secret);
            api.send(api.request(Method::DELETE, &format!("/v1/secrets/{id}")))
                .await?;
            eprintln!("deleted {id}");
        }
    }
    Ok(())
}

/// Prints a JSON object as aligned `key value` lines.
pub fn print_fields(value: &Value) {
    let Some(map) = value.as_object() else {
        println!("{value}");
        return;
    };
    for (key, v) in map {
        let shown = match v {
            Value::Null => "-".to_owned(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!("{key:<14} {shown}");
    }
}
