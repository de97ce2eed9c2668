//! The `keyledger` binary: parses the command line and hands over to the wiring in
//! `keyledger::stack` or to the small clients in `cli`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// The request path allocates for every request (headers, JSON, rows); mimalloc's
/// per-thread free lists cost less there than glibc's malloc, which profiles of the
/// payload read path showed at about 15% of the server's CPU. Built without asking for
/// transparent huge pages (`no_thp`): each fresh 2 MiB page was zeroed whole as
/// mimalloc purged and reused its memory, 9% of `keyledger up`'s CPU under creates
/// (docs/performance.md, "The allocator without huge pages").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_tracing(args.verbose);
    infra::tls::install_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::error_text(&e));
            ExitCode::FAILURE
        }
    }
}
