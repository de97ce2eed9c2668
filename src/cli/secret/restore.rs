//! `keyledger secret restore`.

use anyhow::Result;
use clap::Args;
use reqwest::Method;

use crate::cli::ClientArgs;
use crate::cli::http::{Api, secret_id};

/// Undo a scheduled deletion.
#[derive(Debug, Args)]
pub struct Restore {
    #[command(flatten)]
    client: ClientArgs,
    /// The secret: id, secret_ref or reference.
    secret: String,
}

impl Restore {
    pub async fn run(self) -> Result<()> {
        let Self { client, secret } = self;
        let api = Api::new(&client)?;
        let id = secret_id(&secret);
        api.send(api.request(Method::POST, &format!("/v1/secrets/{id}/restore")))
            .await?;
        eprintln!("restored {secret}");
        Ok(())
    }
}
