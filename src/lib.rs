//! Wiring of keyledger's components, shared by the `keyledger` binary and the
//! end-to-end tests. No domain logic lives here: only which part talks to which.

pub mod stack;
