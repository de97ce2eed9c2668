//! `keyledger secret create|get|list|delete|restore|put-value|versions|stage`, through
//! the HTTP API. A secret is named by its id, its `secret_ref`, its reference
//! (`krn:keyledger:…`) or its name.

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
        /// Tags as key=value (repeatable).
        #[arg(long = "tag", value_parser = parse_pair)]
        tags: Vec<(String, String)>,
        /// The service that manages the secret (must be your token's service); only
        /// it may change the secret.
        #[arg(long)]
        owning_service: Option<String>,
    },
    /// Show a secret's metadata, or with --payload write its payload to stdout.
    Get {
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
    /// Delete a secret: at once, destroying its keys (as Barbican), or after a
    /// recovery window during which `restore` undoes it.
    Delete {
        #[command(flatten)]
        client: ClientArgs,
        /// The secret: id, secret_ref, reference or name.
        secret: String,
        /// Keep it restorable this many days (7 to 30 by default).
        #[arg(long, conflicts_with = "recovery_window")]
        recovery_window_days: Option<u64>,
        /// Keep it restorable this long, e.g. 7d.
        #[arg(long)]
        recovery_window: Option<String>,
        /// Delete it even though consumers are registered.
        #[arg(long)]
        force: bool,
    },
    /// Undo a scheduled deletion.
    Restore {
        #[command(flatten)]
        client: ClientArgs,
        /// The secret: id, secret_ref or reference.
        secret: String,
    },
    /// Store a new version of a secret's value; it becomes current unless --stage
    /// says otherwise. Prints the version id.
    PutValue {
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
    },
    /// List a secret's versions and their stages.
    Versions {
        #[command(flatten)]
        client: ClientArgs,
        /// The secret: id, secret_ref, reference or name.
        secret: String,
        /// Print the JSON the API returned.
        #[arg(long)]
        json: bool,
    },
    /// Move a stage to a version (and off the version it is on).
    Stage {
        #[command(flatten)]
        client: ClientArgs,
        /// The secret: id, secret_ref, reference or name.
        secret: String,
        /// current, previous or pending.
        stage: String,
        /// The version to put the stage on.
        #[arg(long)]
        to: Option<String>,
        /// The version the stage is on now.
        #[arg(long)]
        from: Option<String>,
    },
}

/// Adds the payload fields to a request body: text as-is, anything else base64.
fn add_payload(body: &mut Value, bytes: &[u8], content_type: Option<String>) -> Result<()> {
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
        body["payload"] = json!(text);
    } else {
        body["payload"] = json!(B64.encode(bytes));
        body["payload_content_encoding"] = json!("base64");
    }
    body["payload_content_type"] = json!(content_type);
    Ok(())
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
            tags,
            owning_service,
        } => {
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
            let created: Value = response.json().await?;
            let reference = created["secret_ref"].as_str().unwrap_or_default();
            println!("{}", secret_id(reference));
            eprintln!("created {reference} (log sequence {seq})");
        }
        SecretCommand::Get {
            client,
            secret,
            payload,
            version,
            json,
        } => {
            let api = Api::new(&client);
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
        SecretCommand::Delete {
            client,
            secret,
            recovery_window_days,
            recovery_window,
            force,
        } => {
            let api = Api::new(&client);
            // Learn the id first: once scheduled, the name no longer resolves, and the
            // id is what `restore` takes.
            let id = resolve_id(&api, &secret).await?;
            let mut query = Vec::new();
            query.extend(recovery_window_days.map(|d| ("recovery_window_days", d.to_string())));
            query.extend(recovery_window.map(|w| ("recovery_window", w)));
            let scheduled = !query.is_empty();
            if force {
                query.push(("force", "true".to_owned()));
            }
            api.send(
                api.request(Method::DELETE, &format!("/v1/secrets/{id}"))
                    .query(&query),
            )
            .await?;
            if scheduled {
                eprintln!("scheduled {id} for deletion; `keyledger secret restore {id}` undoes it");
            } else {
                eprintln!("deleted {secret}");
            }
        }
        SecretCommand::Restore { client, secret } => {
            let api = Api::new(&client);
            let id = secret_id(&secret);
            api.send(api.request(Method::POST, &format!("/v1/secrets/{id}/restore")))
                .await?;
            eprintln!("restored {secret}");
        }
        SecretCommand::PutValue {
            client,
            secret,
            payload,
            payload_file,
            content_type,
            client_request_token,
            stages,
        } => {
            let api = Api::new(&client);
            let id = secret_id(&secret);
            let Some(bytes) = read_payload(payload, payload_file)? else {
                bail!("give the new value with --payload or --payload-file");
            };
            let mut body = json!({ "client_request_token": client_request_token });
            if !stages.is_empty() {
                body["stages"] = json!(stages);
            }
            add_payload(&mut body, &bytes, content_type)?;
            if let Value::Object(map) = &mut body {
                map.retain(|_, v| !v.is_null());
            }
            let response = api
                .send(
                    api.request(Method::POST, &format!("/v1/secrets/{id}/versions"))
                        .json(&body),
                )
                .await?;
            let value: Value = response.json().await?;
            println!("{}", value["version_id"].as_str().unwrap_or_default());
        }
        SecretCommand::Versions {
            client,
            secret,
            json,
        } => {
            let api = Api::new(&client);
            let id = secret_id(&secret);
            // Every page of them (a secret holds at most a few hundred).
            let mut versions: Vec<Value> = Vec::new();
            loop {
                let response = api
                    .send(
                        api.request(Method::GET, &format!("/v1/secrets/{id}/versions"))
                            .query(&[("limit", "100"), ("offset", &versions.len().to_string())]),
                    )
                    .await?;
                let page: Value = response.json().await?;
                let got = page["versions"].as_array().cloned().unwrap_or_default();
                let total = page["total"].as_u64().unwrap_or_default();
                let done = got.is_empty() || versions.len() + got.len() >= total as usize;
                versions.extend(got);
                if done {
                    break;
                }
            }
            if json {
                let value = serde_json::json!({"versions": versions, "total": versions.len()});
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(());
            }
            println!("{:<36}  {:<27}  STAGES", "VERSION", "CREATED");
            for v in &versions {
                let stages: Vec<&str> = v["stages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "{:<36}  {:<27}  {}",
                    v["version_id"].as_str().unwrap_or_default(),
                    v["created"].as_str().unwrap_or_default(),
                    if stages.is_empty() {
                        "(deprecated)".to_owned()
                    } else {
                        stages.join(",")
                    }
                );
            }
        }
        SecretCommand::Stage {
            client,
            secret,
            stage,
            to,
            from,
        } => {
            let api = Api::new(&client);
            let id = secret_id(&secret);
            let body = json!({ "move_to": to, "remove_from": from });
            api.send(
                api.request(Method::PUT, &format!("/v1/secrets/{id}/stages/{stage}"))
                    .json(&body),
            )
            .await?;
            eprintln!("moved {stage}");
        }
    }
    Ok(())
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
    let value: Value = response.json().await?;
    Ok(secret_id(value["secret_ref"].as_str().unwrap_or(given)))
}

/// Prints a JSON object as aligned `key value` lines.
pub fn print_fields(value: &Value) {
    let Some(map) = value.as_object() else {
        println!("{value}");
        return;
    };
    let width = map.keys().map(String::len).max().unwrap_or(0);
    for (key, v) in map {
        let shown = match v {
            Value::Null => "-".to_owned(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!("{key:<width$} {shown}");
    }
}
