//! `keyledger secret stage`.

use anyhow::Result;
use api::requests::MoveStageBody;
use clap::Args;
use reqwest::Method;

use crate::cli::ClientArgs;
use crate::cli::http::{Api, secret_id};

/// Move a stage to a version (and off the version it is on).
#[derive(Debug, Args)]
pub struct Stage {
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
}

impl Stage {
    pub async fn run(self) -> Result<()> {
        let Self {
            client,
            secret,
            stage,
            to,
            from,
        } = self;
        let api = Api::new(&client)?;
        let id = secret_id(&secret);
        let body = MoveStageBody {
            move_to: to,
            remove_from: from,
        };
        api.send(
            api.request(Method::PUT, &format!("/v1/secrets/{id}/stages/{stage}"))
                .json(&body),
        )
        .await?;
        eprintln!("moved {stage}");
        Ok(())
    }
}
