//! `keyledger secret versions`.

use anyhow::Result;
use api::responses::VersionList;
use clap::Args;
use reqwest::Method;

use crate::cli::ClientArgs;
use crate::cli::http::{Api, secret_id};

/// List a secret's versions and their stages.
#[derive(Debug, Args)]
pub struct Versions {
    #[command(flatten)]
    client: ClientArgs,
    /// The secret: id, secret_ref, reference or name.
    secret: String,
    /// Print the JSON the API returned.
    #[arg(long)]
    json: bool,
}

impl Versions {
    pub async fn run(self) -> Result<()> {
        let Self {
            client,
            secret,
            json,
        } = self;
        let api = Api::new(&client)?;
        let id = secret_id(&secret);
        // Every page of them (a secret holds at most a few hundred).
        let mut versions = Vec::new();
        loop {
            let response = api
                .send(
                    api.request(Method::GET, &format!("/v1/secrets/{id}/versions"))
                        .query(&[("limit", "100"), ("offset", &versions.len().to_string())]),
                )
                .await?;
            let page: VersionList = response.json().await?;
            let done = page.versions.is_empty()
                || versions.len() + page.versions.len() >= page.total as usize;
            versions.extend(page.versions);
            if done {
                break;
            }
        }
        if json {
            let all = VersionList {
                total: versions.len() as u64,
                versions,
                links: Default::default(),
            };
            println!("{}", serde_json::to_string_pretty(&all)?);
            return Ok(());
        }
        println!("{:<36}  {:<27}  STAGES", "VERSION", "CREATED");
        for v in &versions {
            println!(
                "{:<36}  {:<27}  {}",
                v.version_id,
                v.created,
                if v.stages.is_empty() {
                    "(deprecated)".to_owned()
                } else {
                    v.stages.join(",")
                }
            );
        }
        Ok(())
    }
}
