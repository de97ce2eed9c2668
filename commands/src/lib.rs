//! keyledger's write side, laid out as `domain` is: one module per aggregate
//! (`secret`, `container`, `order`), the command loop and the NATS command service
//! they share (`shared`), and what works on the log as a whole (`log`: checkpoints,
//! migration, synthetic load). What the read side shares with it is in `infra`.

pub mod access_key;
pub mod container;
pub mod keyring;
pub mod log;
pub mod order;
pub mod quota;
pub mod secret;
pub mod shared;
pub mod shredder;

/// Why a view the write side reads (the read model's due tasks and pending orders)
/// could not be read; the caller logs it and tries again on its next round.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;
