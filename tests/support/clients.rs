//! Where the Python clients the tests drive are: `scripts/clients.sh` installs them
//! into a venv and names it in the environment.

use std::path::PathBuf;

/// Where the client tests' Python files and configuration are.
pub fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// An environment variable `scripts/clients.sh` sets; a clear failure without it.
pub fn installed(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with ./scripts/test, which installs the \
             clients (scripts/clients.sh)"
        )
    })
}

/// A program installed in the clients' venv (next to its Python).
pub fn venv_program(name: &str) -> PathBuf {
    PathBuf::from(installed("KEYLEDGER_CLIENTS_PYTHON")).with_file_name(name)
}
