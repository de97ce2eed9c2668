//! keyledger's read side: the projector folds the event stream into SQL read models
//! (SQLite by default), with its checkpoint in the same transaction as its rows; the
//! read model answers the HTTP API's queries.

mod apply;
pub mod db;
pub mod metrics;
pub mod pg_error;
pub mod pg_tls;
pub mod projector;
pub mod read;
mod sqlite_reads;
pub mod tap;
mod wal;
pub mod writer;
