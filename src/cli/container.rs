//! `keyledger container get|check`, through the HTTP API.

use anyhow::{Result, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use super::ClientArgs;
use super::http::{Api, secret_id};

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Show a container (JSON).
    Get {
        #[command(flatten)]
        client: ClientArgs,
        /// The container's id or container_ref.
        container: String,
    },
    /// Check a certificate container the way a load balancer would use it: each finding
    /// with its fix. Exits non-zero when there are findings.
    Check {
        #[command(flatten)]
        client: ClientArgs,
        /// The container's id or container_ref.
        container: String,
    },
}

pub async fn run(command: ContainerCommand) -> Result<()> {
    match command {
        ContainerCommand::Get { client, container } => {
            let api = Api::new(&client);
            let id = secret_id(&container);
            let response = api
                .send(api.request(Method::GET, &format!("/v1/containers/{id}")))
                .await?;
            let value: Value = response.json().await?;
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        ContainerCommand::Check { client, container } => {
            let api = Api::new(&client);
            let id = secret_id(&container);
            let response = api
                .send(api.request(Method::GET, &format!("/v1/containers/{id}/tls-check")))
                .await?;
            let value: Value = response.json().await?;
            let findings = value["findings"].as_array().cloned().unwrap_or_default();
            if findings.is_empty() {
                println!("ok: nothing a TLS endpoint would fail on");
                return Ok(());
            }
            for f in &findings {
                println!(
                    "{}: {}\n  fix: {}",
                    f["code"].as_str().unwrap_or_default(),
                    f["message"].as_str().unwrap_or_default(),
                    f["fix"].as_str().unwrap_or_default()
                );
            }
            let consumers: Vec<&str> = value["consumers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["URL"].as_str())
                .collect();
            if !consumers.is_empty() {
                println!("consumers to tell: {}", consumers.join(", "));
            }
            bail!("{} finding(s)", findings.len());
        }
    }
    Ok(())
}
