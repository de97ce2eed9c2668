//! `keyledger acl get|set|delete`: a secret's ACL through the HTTP API (Barbican's
//! `acl get`, `acl submit`, `acl delete`).

use anyhow::Result;
use api::requests::AclBody;
use api::responses::AclView;
use clap::Subcommand;
use infra::protocol::{AclOperationRequest, ConditionsRequest};
use reqwest::Method;

use super::ClientArgs;
use super::http::{Api, secret_id};

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Show a secret's ACL.
    Get {
        #[command(flatten)]
        client: ClientArgs,
        /// The secret's id or secret_ref.
        secret: String,
    },
    /// Replace a secret's ACL (or, with --merge, change only what is given). Conditions
    /// not given stay as they are; `acl delete` lifts them, with the rest.
    Set {
        #[command(flatten)]
        client: ClientArgs,
        /// The secret's id or secret_ref.
        secret: String,
        /// Users who may read and decrypt it, from any project (comma-separated).
        #[arg(long, value_delimiter = ',')]
        users: Option<Vec<String>>,
        /// Whether the project's members may read it as their roles allow; false
        /// makes it private.
        #[arg(long)]
        project_access: Option<bool>,
        /// Networks reads must come from, e.g. 192.168.0.0/16 (repeatable).
        #[arg(long = "source-cidr")]
        source_cidrs: Vec<String>,
        /// UTC hours reads are allowed in, as FROM-TO, e.g. 8-18.
        #[arg(long, value_parser = parse_hours)]
        utc_hours: Option<(i64, i64)>,
        /// UTC days reads are allowed on, e.g. mon,tue,wed,thu,fri.
        #[arg(long, value_delimiter = ',')]
        weekdays: Option<Vec<String>>,
        /// Change only the fields given (PATCH) instead of replacing the ACL (PUT).
        #[arg(long)]
        merge: bool,
    },
    /// Reset a secret's ACL to the default (project access, nobody listed).
    Delete {
        #[command(flatten)]
        client: ClientArgs,
        /// The secret's id or secret_ref.
        secret: String,
    },
}

fn parse_hours(s: &str) -> Result<(i64, i64), String> {
    let (from, to) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not FROM-TO, e.g. 8-18"))?;
    let hour = |h: &str| {
        h.trim()
            .parse::<i64>()
            .map_err(|_| format!("{h:?} is not an hour"))
    };
    Ok((hour(from)?, hour(to)?))
}

pub async fn run(command: AclCommand) -> Result<()> {
    match command {
        AclCommand::Get { client, secret } => {
            let api = Api::new(&client)?;
            let path = format!("/v1/secrets/{}/acl", secret_id(&secret));
            let acl: AclView = api
                .send(api.request(Method::GET, &path))
                .await?
                .json()
                .await?;
            super::output::print_json(&acl)?;
        }
        AclCommand::Set {
            client,
            secret,
            users,
            project_access,
            source_cidrs,
            utc_hours,
            weekdays,
            merge,
        } => {
            let api = Api::new(&client)?;
            let conditions = ConditionsRequest {
                source_cidrs: (!source_cidrs.is_empty()).then_some(source_cidrs),
                utc_hours,
                weekdays,
            };
            let any_condition = conditions.source_cidrs.is_some()
                || conditions.utc_hours.is_some()
                || conditions.weekdays.is_some();
            let body = AclBody {
                read: AclOperationRequest {
                    project_access,
                    users,
                    conditions: any_condition.then_some(conditions),
                },
            };
            let method = if merge { Method::PATCH } else { Method::PUT };
            let path = format!("/v1/secrets/{}/acl", secret_id(&secret));
            api.send(api.request(method, &path).json(&body)).await?;
            eprintln!("ACL of {} set", secret_id(&secret));
        }
        AclCommand::Delete { client, secret } => {
            let api = Api::new(&client)?;
            let path = format!("/v1/secrets/{}/acl", secret_id(&secret));
            api.send(api.request(Method::DELETE, &path)).await?;
            eprintln!("ACL of {} reset to the default", secret_id(&secret));
        }
    }
    Ok(())
}
