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
use projections::read::Candidate;

use super::AwsCaller;
use super::error::AwsError;
use crate::state::AppState;

/// The secret `input` names in the caller's project: live, or scheduled for deletion.
pub async fn resolve(
    state: &AppState,
    caller: &AwsCaller,
    input: &str,
) -> Result<SecretId, AwsError> {
    let project = &caller.caller.principal.project;
    let now = (state.clock)();
    let parsed = SecretInput::parse(input)?;
    let by_reference =
        |name: &str, suffix: &str| format!("{PREFIX}{project}:secret:{name}-{suffix}");
    let mut found: Vec<Candidate> = match parsed {
        SecretInput::Name(name) => {
            let named = state.read.by_name_any(project, name, now).await?;
            match split_suffix(name) {
                // keyledger resolves what AWS refuses: a full name with its suffix.
                Some((base, suffix)) if named.is_empty() => {
                    state.read.by_reference(&by_reference(base, suffix)).await?
                }
                _ => named,
            }
        }
        SecretInput::Arn { account, rest, .. } => {
            let mine = account_of(project);
            if account != mine {
                return Err(AwsError::not_found(format!(
                    "The ARN names account {account}; your access key acts in project \
                     {project}, which is account {mine}"
                )));
            }
            let mut found = match split_suffix(rest) {
                Some((base, suffix)) => {
                    state.read.by_reference(&by_reference(base, suffix)).await?
                }
                None => Vec::new(),
            };
            // The partial-ARN reading: `rest` is the whole name.
            found.extend(state.read.by_name_any(project, rest, now).await?);
            found
        }
    };
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found.dedup_by(|a, b| a.id == b.id);
    match found.as_slice() {
        [one] => SecretId::parse(&one.id).map_err(|_| {
            AwsError::new(
                super::error::Code::InternalServiceError,
                "the read model holds a malformed secret id; an operator rebuilds it with \
                 `keyledger projections rebuild`",
            )
        }),
        [] => Err(AwsError::not_found(format!(
            "No secret in project {project} is named or has the ARN {input:?}."
        ))),
        many => {
            let arns: Vec<String> = many
                .iter()
                .map(|c| arn_of(&caller.region, project, &c.reference))
                .collect();
            Err(AwsError::invalid(format!(
                "SecretId {input:?} names {} secrets: {}. Give the full ARN of the one you mean.",
                arns.len(),
                arns.join(", ")
            )))
        }
    }
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
