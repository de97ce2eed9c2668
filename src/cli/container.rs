//! `keyledger container get|check`, through the HTTP API.

use anyhow::{Result, bail};
use api::responses::{Container, TlsCheck};
use clap::Subcommand;
use reqwest::Method;

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
            let api = Api::new(&client)?;
            let id = secret_id(&container);
            let response = api
                .send(api.request(Method::GET, &format!("/v1/containers/{id}")))
                .await?;
            let container: Container = response.json().await?;
            super::output::print_json(&container)?;
        }
        ContainerCommand::Check { client, container } => {
            let api = Api::new(&client)?;
            let id = secret_id(&container);
            let response = api
                .send(api.request(Method::GET, &format!("/v1/containers/{id}/tls-check")))
                .await?;
            let check: TlsCheck = response.json().await?;
            if check.findings.is_empty() {
                println!("ok: nothing a TLS endpoint would fail on");
                return Ok(());
            }
            for f in &check.findings {
                println!("{}: {}\n  fix: {}", f.code, f.message, f.fix);
            }
            let consumers: Vec<&str> = check.consumers.iter().map(|c| c.url.as_str()).collect();
            if !consumers.is_empty() {
                println!("consumers to tell: {}", consumers.join(", "));
            }
            bail!("{} finding(s)", check.findings.len());
        }
    }
    Ok(())
}
