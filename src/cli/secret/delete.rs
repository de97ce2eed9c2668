//! `keyledger secret delete`.

use anyhow::Result;
use clap::Args;
use reqwest::Method;

use super::resolve_id;
use crate::cli::ClientArgs;
use crate::cli::http::Api;

/// Delete a secret: at once, destroying its keys (as Barbican), or after a
/// recovery window during which `restore` undoes it.
#[derive(Debug, Args)]
pub struct Delete {
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
}

impl Delete {
    pub async fn run(self) -> Result<()> {
        let Self {
            client,
            secret,
            recovery_window_days,
            recovery_window,
            force,
        } = self;
        let api = Api::new(&client)?;
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
        Ok(())
    }
}
