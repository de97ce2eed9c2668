//! `keyledger secret list`.

use anyhow::Result;
use api::responses::SecretList;
use clap::Args;
use reqwest::Method;
use serde_json::Value;

use crate::cli::ClientArgs;
use crate::cli::http::{Api, secret_id};

/// List the project's secrets.
#[derive(Debug, Args)]
pub struct List {
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
}

impl List {
    pub async fn run(self) -> Result<()> {
        let Self {
            client,
            name,
            secret_type,
            limit,
            offset,
            acl_only,
            json,
        } = self;
        let api = Api::new(&client)?;
        let mut query = vec![("limit", limit.to_string()), ("offset", offset.to_string())];
        query.extend(name.map(|n| ("name", n)));
        query.extend(secret_type.map(|t| ("secret_type", t)));
        if acl_only {
            query.push(("acl_only", "true".to_owned()));
        }
        let response = api
            .send(api.request(Method::GET, "/v1/secrets").query(&query))
            .await?;
        if json {
            // As the API wrote it, every field included.
            let value: Value = response.json().await?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            return Ok(());
        }
        let page: SecretList = response.json().await?;
        println!("{:<36}  {:<12}  {:<27}  NAME", "ID", "TYPE", "CREATED");
        for s in &page.secrets {
            println!(
                "{:<36}  {:<12}  {:<27}  {}",
                secret_id(&s.secret_ref),
                s.secret_type,
                s.created,
                s.name.as_deref().unwrap_or("-"),
            );
        }
        eprintln!("{} of {} shown", page.secrets.len(), page.total);
        Ok(())
    }
}
