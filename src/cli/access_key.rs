//! `keyledger access-key create|import|list|revoke`: AWS-style access keys (SigV4
//! credentials) through the HTTP API.
//!
//! A key acts in the project of the token that makes it, as every other write of the
//! CLI does; `--project` only confirms it (and is refused when it names another).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use api::requests::CreateAccessKeyBody;
use api::responses::{AccessKeyCreated, AccessKeyList};
use clap::{Args, Subcommand};
use infra::protocol::PayloadField;
use reqwest::Method;
use serde_json::Value;

use super::ClientArgs;
use super::http::{Api, secret_id, seq_of};

/// Whom a key stands for; each defaults to the token's.
#[derive(Debug, Args)]
pub struct Principal {
    /// The project the key acts in: your token's (the default); another is refused.
    #[arg(long)]
    project: Option<String>,
    /// The user the key acts as (default: yours; another user's needs admin).
    #[arg(long)]
    user: Option<String>,
    /// The roles it carries, comma-separated (default: your token's; others than
    /// your token's need admin).
    #[arg(long, value_delimiter = ',')]
    roles: Option<Vec<String>>,
    /// The service it acts as (default: your token's; another needs admin).
    #[arg(long)]
    service: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AccessKeyCommand {
    /// Create an access key; prints AWS_ACCESS_KEY_ID=… and AWS_SECRET_ACCESS_KEY=…
    /// (the secret is shown this once).
    Create {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        principal: Principal,
    },
    /// Import an existing key pair; the secret comes from a file, never the command
    /// line. Prints AWS_ACCESS_KEY_ID=….
    Import {
        #[command(flatten)]
        client: ClientArgs,
        /// The access key id (16 to 64 ASCII letters and digits).
        #[arg(long)]
        access_key_id: String,
        /// The file holding the secret access key (- for stdin); one trailing newline
        /// is ignored.
        #[arg(long)]
        secret_access_key_file: PathBuf,
        #[command(flatten)]
        principal: Principal,
    },
    /// List your access keys (with --all, the project's: admins).
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// Every key of the project (needs admin).
        #[arg(long)]
        all: bool,
        /// Print the JSON the API returned.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an access key: it stops signing, and its secret is destroyed.
    Revoke {
        #[command(flatten)]
        client: ClientArgs,
        /// The access key id.
        id: String,
    },
}

/// The secret access key in `path` (or stdin for `-`), without one trailing newline.
fn read_secret(path: &Path) -> Result<PayloadField> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the secret access key from stdin")?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the secret access key from {}", path.display()))?;
    }
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    // The String is moved, not copied: the only copy is the one that is zeroized.
    Ok(PayloadField::from(text))
}

/// Sends the create, returning the created key.
async fn create(
    client: &ClientArgs,
    principal: Principal,
    access_key_id: Option<String>,
    secret_access_key: Option<PayloadField>,
) -> Result<AccessKeyCreated> {
    let api = Api::new(client)?;
    let body = CreateAccessKeyBody {
        project: principal.project,
        user: principal.user,
        roles: principal.roles,
        service: principal.service,
        access_key_id,
        secret_access_key,
    };
    let response = api
        .send(api.request(Method::POST, "/v1/access-keys").json(&body))
        .await?;
    let seq = seq_of(&response);
    let created: AccessKeyCreated = response.json().await?;
    eprintln!(
        "created access key {} for user {} in project {} (log sequence {seq})",
        created.access_key_id, created.user, created.project
    );
    Ok(created)
}

pub async fn run(command: AccessKeyCommand) -> Result<()> {
    match command {
        AccessKeyCommand::Create { client, principal } => {
            let created = create(&client, principal, None, None).await?;
            let Some(secret) = &created.secret_access_key else {
                bail!(
                    "the API created access key {} but returned no secret access key; revoke \
                     it with `keyledger access-key revoke {}` and create another",
                    created.access_key_id,
                    created.access_key_id
                );
            };
            println!("AWS_ACCESS_KEY_ID={}", created.access_key_id);
            println!("AWS_SECRET_ACCESS_KEY={}", secret.expose());
            eprintln!("the secret access key is shown only now: store it");
        }
        AccessKeyCommand::Import {
            client,
            access_key_id,
            secret_access_key_file,
            principal,
        } => {
            let secret = read_secret(&secret_access_key_file)?;
            let created = create(&client, principal, Some(access_key_id), Some(secret)).await?;
            println!("AWS_ACCESS_KEY_ID={}", created.access_key_id);
        }
        AccessKeyCommand::List { client, all, json } => {
            let api = Api::new(&client)?;
            let mut request = api.request(Method::GET, "/v1/access-keys");
            if all {
                request = request.query(&[("all", "true")]);
            }
            let response = api.send(request).await?;
            if json {
                let value: Value = response.json().await?;
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(());
            }
            let list: AccessKeyList = response.json().await?;
            for k in &list.access_keys {
                let service = k
                    .service
                    .as_ref()
                    .map(|s| format!(" service={s}"))
                    .unwrap_or_default();
                let revoked = k
                    .revoked
                    .as_ref()
                    .map(|t| format!(" revoked={t}"))
                    .unwrap_or_default();
                println!(
                    "{}  {}  user={} roles={}{service} created={}{revoked}",
                    k.access_key_id,
                    k.status,
                    k.user,
                    k.roles.join(","),
                    k.created,
                );
            }
            eprintln!("{} access key(s)", list.total);
        }
        AccessKeyCommand::Revoke { client, id } => {
            let api = Api::new(&client)?;
            let path = format!("/v1/access-keys/{}", secret_id(&id));
            api.send(api.request(Method::DELETE, &path)).await?;
            eprintln!(
                "access key {id} revoked; its secret's data key is destroyed (should that fail, \
                 keyledger logs it: revoke again to retry)"
            );
        }
    }
    Ok(())
}
