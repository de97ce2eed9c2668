//! `keyledger secret versions`.

use anyhow::Result;
use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};

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
            let value = json!({"versions": versions, "total": versions.len()});
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
        Ok(())
    }
}
