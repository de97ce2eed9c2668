//! KEK rotation on the write side: the keyring's commits (`record`) and the online
//! re-wrap of every stored data key under the current KEK (`rewrap`). The CLI's
//! `keyledger keys` commands drive them; the components only follow which KEK is
//! current (`infra::kek::current`).

pub mod rewrap;

use domain::commit::NewCommit;
use domain::ids::CommandId;
use domain::keyring::{KeyringEvent, KeyringState, aggregate, evolve};
use domain::principal::Actor;
use infra::clock::Clock;

use crate::shared::store::{AppendOutcome, EventStore, Loaded, StoreError};

/// Attempts at appending when other keyring commits land first.
const ATTEMPTS: usize = 5;

/// The keyring as its commits leave it.
pub async fn load(store: &EventStore) -> Result<Loaded<KeyringState>, StoreError> {
    store
        .load::<KeyringEvent, KeyringState>(&aggregate().subject(), evolve)
        .await
}

/// Appends `event` to the keyring as keyledger's `kek rotation` task; its sequence.
pub async fn record(
    store: &EventStore,
    event: KeyringEvent,
    clock: &Clock,
) -> Result<u64, StoreError> {
    let id = CommandId::parse(&uuid::Uuid::new_v4().to_string())
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    for _ in 0..ATTEMPTS {
        let loaded = load(store).await?;
        let commit = NewCommit {
            id: id.clone(),
            aggregate: aggregate(),
            version: loaded.version + 1,
            command: event.command().to_owned(),
            actor: Actor::kek_rotation(),
            at: clock(),
            events: vec![event.clone()],
        }
        .seal_for_log(loaded.last_hash, store.key());
        match store.append(&commit, loaded.last_seq, None).await? {
            AppendOutcome::Appended(seq) | AppendOutcome::Duplicate(seq) => return Ok(seq),
            // Another keyring commit landed first: load again and follow it.
            AppendOutcome::WrongLastSequence => continue,
        }
    }
    Err(StoreError::Unavailable(
        "the keyring kept changing while this commit was appended; try again".into(),
    ))
}
