//! What an AWS `SecretId` names: a secret's name, its full ARN, or a partial ARN (the
//! ARN without the six-character suffix), always in the caller's project.
//!
//! AWS resolves a partial ARN by prefix, so a name that itself ends in a hyphen and
//! six characters can pick the wrong secret, or fail. keyledger compares whole
//! strings: it collects every secret the input can name under each reading, and when
//! there is more than one it names each with the full ARN that picks it.

use domain::ids::{ProjectId, SecretId};
use domain::secret::arn::{SecretInput, account_of, split_suffix};
use domain::secret::reference::PREFIX;
use projections::read::{Candidate, Lookup};

use super::AwsCaller;
use super::error::AwsError;
use crate::state::AppState;

/// The secret `input` names in the caller's project: live, or scheduled for deletion.
///
/// - A full ARN names exactly the secret whose reference it carries; only when no
///   secret has it is it read as a partial ARN (the whole rest as a name). So a
///   secret named after another's name and suffix can never take over that one's ARN.
/// - A name is every secret with that name and, when it ends in a hyphen and six
///   characters, the secret with that name and suffix; several are an error that
///   gives each one's full ARN.
/// - Among secrets with one name, those AWS's API created (unique names) come first:
///   a secret Barbican's API later gave the same name does not hide them.
/// - An error names only the secrets the caller may see; it counts the others.
pub async fn resolve(
    state: &AppState,
    caller: &AwsCaller,
    input: &str,
) -> Result<SecretId, AwsError> {
    let project = &caller.caller.principal.project;
    let parsed = SecretInput::parse(input)?;
    let reference = |name: &str, suffix: &str| format!("{PREFIX}{project}:secret:{name}-{suffix}");
    let mut found: Vec<Candidate> = match parsed {
        SecretInput::Name(name) => {
            let mut found = named(state, caller, name).await?;
            if let Some((base, suffix)) = split_suffix(name) {
                found.extend(state.read.by_reference(&reference(base, suffix)).await?);
            }
            if found.is_empty() {
                found.extend(unnamed(state, caller, name).await?);
            }
            found
        }
        SecretInput::Arn { account, rest, .. } => {
            let mine = account_of(project);
            if account != mine {
                return Err(AwsError::not_found(format!(
                    "The ARN names account {account}; your access key acts in project \
                     {project}, which is account {mine}"
                )));
            }
            let exact = match split_suffix(rest) {
                Some((base, suffix)) => state.read.by_reference(&reference(base, suffix)).await?,
                None => Vec::new(),
            };
            if exact.is_empty() {
                // The partial-ARN reading: `rest` is the whole name.
                named(state, caller, rest).await?
            } else {
                exact
            }
        }
    };
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found.dedup_by(|a, b| a.id == b.id);
    match found.as_slice() {
        [one] => parse_id(one),
        [] => Err(AwsError::not_found(format!(
            "No secret in project {project} is named or has the ARN {input:?}."
        ))),
        many => {
            let shown =
                crate::access::visible_candidates(state, &caller.caller, many.to_vec()).await?;
            let mut arns: Vec<String> = shown
                .iter()
                .map(|c| arn_of(&caller.region, project, &c.reference))
                .collect();
            if shown.len() < many.len() {
                arns.push(format!("{} you may not read", many.len() - shown.len()));
            }
            Err(AwsError::invalid(format!(
                "SecretId {input:?} names {} secrets: {}. Give the full ARN of the one you mean.",
                many.len(),
                arns.join(", ")
            )))
        }
    }
}

/// The secret of the caller's project with the id `name` and no name of its own (one
/// Barbican's API created without a name): AWS's answers name it by its id, and a
/// client gives that name back.
async fn unnamed(
    state: &AppState,
    caller: &AwsCaller,
    name: &str,
) -> Result<Option<Candidate>, AwsError> {
    let Ok(id) = SecretId::parse(name) else {
        return Ok(None);
    };
    let row = match state.read.get_secret(id, (state.clock)()).await?.value {
        Lookup::Found(row) => row,
        Lookup::Expired(row) | Lookup::PendingDeletion(row) => *row,
        Lookup::Missing => return Ok(None),
    };
    let mine = row.project == caller.caller.principal.project;
    let nameless = row.name.as_deref().is_none_or(str::is_empty);
    Ok(
        (mine && nameless && id.to_string() == name).then(|| Candidate {
            id: row.id.to_string(),
            reference: row.reference,
        }),
    )
}

fn parse_id(candidate: &Candidate) -> Result<SecretId, AwsError> {
    SecretId::parse(&candidate.id).map_err(|_| {
        AwsError::new(
            super::error::Code::InternalServiceError,
            "the read model holds a malformed secret id; an operator rebuilds it with \
             `keyledger projections rebuild`",
        )
    })
}

/// The secrets named `name`: the one AWS's API created under it (its unique-name
/// incarnation), if there is one, else every secret with the name.
async fn named(
    state: &AppState,
    caller: &AwsCaller,
    name: &str,
) -> Result<Vec<Candidate>, AwsError> {
    let project = &caller.caller.principal.project;
    let all = state
        .read
        .by_name_any(project, name, (state.clock)())
        .await?;
    if all.len() < 2 {
        return Ok(all);
    }
    let unique: Vec<Candidate> = all
        .iter()
        .filter(|c| {
            SecretId::parse(&c.id).is_ok_and(|id| id.incarnation_of(project, name).is_some())
        })
        .cloned()
        .collect();
    Ok(if unique.is_empty() { all } else { unique })
}

/// The ARN of a secret of `project` with `reference`
/// (`krn:keyledger:<project>:secret:<rest>`).
pub fn arn_of(region: &str, project: &ProjectId, reference: &str) -> String {
    let rest = reference
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_prefix(project.as_str()))
        .and_then(|r| r.strip_prefix(":secret:"))
        .unwrap_or(reference);
    format!(
        "arn:aws:secretsmanager:{region}:{}:secret:{rest}",
        account_of(project)
    )
}
