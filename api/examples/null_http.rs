//! The floor under keyledger's HTTP reads: a server that answers every GET with the
//! benchmark's 1 KiB payload and does nothing else, served by the same loop
//! (`api::serve`, its limits and its trailing-slash trim), axum, runtime and allocator
//! as `keyledger up`, but
//! through none of keyledger's routes and middleware (`api::app`'s layers count as
//! keyledger's cost). `bench/openbao/run --floor-bin` drives it with the same wrk
//! script as the payload reads, so a read's cost over the floor is measured in the
//! same run:
//!
//! ```sh
//! cargo build --release --example null_http -p api
//! target/release/examples/null_http 127.0.0.1:0   # prints the address it serves on
//! ```

use std::process::ExitCode;

use api::{ServerLimits, serve};
use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The payload bench.lua stores and checks for: 1 KiB of `x`.
const PAYLOAD: [u8; 1024] = [b'x'; 1024];

/// What keyledger's payload read answers with (but its version header), minus
/// everything it looks up.
async fn payload() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/plain; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
        ],
        PAYLOAD.to_vec(),
    )
}

fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match TcpListener::bind(&addr).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("error: binding {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(local) => println!("null_http serving on http://{local}"),
            Err(e) => {
                eprintln!("error: the listener's address: {e}");
                return ExitCode::FAILURE;
            }
        }
        let app = Router::new().fallback(payload);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            // SIGINT drains the connections; SIGTERM (the harness's) ends it at once.
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
        match serve(listener, app, ServerLimits::default(), None, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: serving: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
