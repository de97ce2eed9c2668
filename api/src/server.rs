//! Serving the API to untrusted clients: HTTP/1.1 with the limits that keep one
//! client from holding the server hostage.
//!
//! - **Header timeout**: a request's head must arrive within `header_timeout` of its
//!   first byte (slowloris).
//! - **Idle timeout**: a keep-alive connection with no request for `idle_timeout` is
//!   closed.
//! - **Body timeout**: a request body must arrive within `body_timeout`
//!   in all, counted from when the handler reads it (in [`crate::body`]: 408), however
//!   the bytes are spread.
//! - **Connection limit**: at most `max_connections` at once, below the process's
//!   file-descriptor limit. At the limit, the connection that has waited longest
//!   without a request being handled (idle, silent, or still sending its head) is
//!   closed to make room, so holding connections open blocks nobody; if every
//!   connection has a request being handled, the newcomer gets a 503 with
//!   `Retry-After`.
//! - **HTTP/2**: not spoken. A client that opens with HTTP/2's preface is told so the
//!   standard way (GOAWAY, `HTTP_1_1_REQUIRED`), not left hanging; over TLS, ALPN
//!   offers HTTP/1.1 only.
//! - **TLS** ([`crate::tls`]): the handshake must end within `header_timeout`, and
//!   counts as waiting for eviction. A newcomer with no room is closed without a
//!   handshake (a 503 in the clear would be garbage to a TLS client).
//!
//! The defaults follow Vault/OpenBao's listener (`http_read_header_timeout` 10 s,
//! `http_read_timeout` 30 s) with a shorter idle timeout than its 5 minutes, since
//! idle connections count against the limit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt as _;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};

use crate::tls::{ClientCertificate, ServerTls};

/// The limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Longest time from a request's first byte to the end of its head.
    pub header_timeout: Duration,
    /// Longest time a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: default_max_connections(),
        }
    }
}

/// File descriptors kept for everything else the process opens (NATS, SQLite, the
/// nats-server's pipes, the log).
const RESERVED_FDS: u64 = 256;

/// The default connection limit: the process's file-descriptor limit less what the
/// rest of keyledger needs, between 16 and 16,384.
pub fn default_max_connections() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes a plain struct we own; no other precondition.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let fds = if ok { limit.rlim_cur } else { 1024 };
    usize::try_from(fds.saturating_sub(RESERVED_FDS).clamp(16, 16_384)).unwrap_or(16)
}

/// HTTP/2's connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the server knows of one connection, shared by its reader, its requests and
/// its watchdog.
#[derive(Debug)]
struct Connection {
    /// Requests being handled.
    in_flight: AtomicUsize,
    /// When the connection last became idle (ms since `epoch`).
    idle_since: AtomicU64,
    /// When the first byte of the next request arrived (ms since `epoch`; 0: none).
    head_started: AtomicU64,
    /// Asks the connection to close (to make room for a newcomer).
    evict: Notify,
    /// Already asked to close: not a candidate for the next newcomer.
    evicted: std::sync::atomic::AtomicBool,
    epoch: Instant,
}

impl Connection {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            evict: Notify::new(),
            evicted: std::sync::atomic::AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// No request is being handled: the connection is idle, silent, or still sending
    /// a request's head.
    fn waiting(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Since when it has been waiting (ms since `epoch`).
    fn waiting_since(&self) -> u64 {
        match self.head_started.load(Ordering::Acquire) {
            0 => self.idle_since.load(Ordering::Acquire),
            started => started,
        }
    }

    /// When the watchdog must close the connection, if nothing changes first.
    fn deadline(&self, limits: &ServerLimits) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let (since, limit) = match self.head_started.load(Ordering::Acquire) {
            0 => (self.idle_since.load(Ordering::Acquire), limits.idle_timeout),
            started => (started, limits.header_timeout),
        };
        let at = Duration::from_millis(since) + limit;
        Some(at.saturating_sub(Duration::from_millis(self.now())))
    }
}

/// The connections being served, for eviction.
#[derive(Default)]
struct Registry {
    next: AtomicU64,
    live: Mutex<HashMap<u64, Arc<Connection>>>,
}

impl Registry {
    fn add(&self, connection: Arc<Connection>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, connection);
        id
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        // A panic while holding this lock leaves a map that is still consistent.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the connection that has waited longest without a request being handled to
    /// close; whether there was one.
    fn evict_longest_waiting(&self) -> bool {
        let live = self.lock();
        let longest = live
            .values()
            .filter(|c| c.waiting() && !c.evicted.load(Ordering::Acquire))
            .min_by_key(|c| c.epoch + Duration::from_millis(c.waiting_since()));
        match longest {
            Some(c) => {
                // Each newcomer evicts a different connection, even before the last
                // one evicted has closed.
                c.evicted.store(true, Ordering::Release);
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A stream that notes when a request starts arriving on an idle connection.
struct Watched<T> {
    inner: T,
    /// Bytes read before hyper took over (the HTTP/2 check), served first.
    prefix: Vec<u8>,
    connection: Arc<Connection>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.drain(..n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let c = &self.connection;
            if c.in_flight.load(Ordering::Acquire) == 0 {
                let _ = c.head_started.compare_exchange(
                    0,
                    c.now().max(1),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts a request in flight for as long as it is handled.
struct InFlight(Arc<Connection>);

impl InFlight {
    fn start(connection: &Arc<Connection>) -> Self {
        connection.in_flight.fetch_add(1, Ordering::AcqRel);
        connection.head_started.store(0, Ordering::Release);
        Self(connection.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let c = &self.0;
        c.idle_since.store(c.now(), Ordering::Release);
        c.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, within `limits`: HTTPS
/// with `tls`, else plain HTTP. A path with a trailing slash is the same resource as
/// without, for every method, as in Barbican (python-barbicanclient POSTs to
/// `/v1/secrets/`): normalised here, before routing (a `Router` wrapped around the
/// routes to do it would cost every request another boxed service and future).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    tls: Option<Arc<ServerTls>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = tower::Layer::layer(&NormalizePathLayer::trim_trailing_slash(), app);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let registry = Arc::new(Registry::default());
    let mut accept_failures = 0u32;
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    accept_failures = 0;
                    a
                }
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was
                    // accepted: wait a moment instead of spinning.
                    accept_failures += 1;
                    if accept_failures == 1 || accept_failures.is_power_of_two() {
                        tracing::warn!(error = %e, "accepting a connection failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) if registry.evict_longest_waiting() => {
                tokio::time::timeout(Duration::from_millis(200), permits.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            Err(_) => None,
        };
        match permit {
            Some(permit) => {
                tokio::spawn(connection(
                    stream,
                    peer,
                    Served {
                        app: app.clone(),
                        limits,
                        registry: registry.clone(),
                        shutdown: shutdown.clone(),
                    },
                    tls.clone(),
                    permit,
                ));
            }
            None if tls.is_some() => drop(stream),
            None => {
                tokio::spawn(refuse(stream, limits.max_connections));
            }
        }
    }
    // Let connections finish their requests: a permit comes back as each closes.
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        permits.acquire_many(u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX)),
    )
    .await;
    Ok(())
}

/// Answers a connection the server has no room for: 503, then closes it.
async fn refuse(mut stream: TcpStream, max: usize) {
    let body = format!(
        "{{\"code\": 503, \"title\": \"Service Unavailable\", \"description\": \"keyledger \
         serves at most {max} connections at once and all are busy; retry shortly\"}}"
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: \
         1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    linger(stream).await;
}

/// Reads what the client still sends (for at most a second, 64 KiB) before closing: a
/// socket closed with unread data is reset, and a reset can make the client discard
/// the answer it was sent (a "lingering close", as web servers do).
async fn linger(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    let mut left: usize = 64 * 1024;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Reads the start of a connection: if it is HTTP/2's preface, refuses it (SETTINGS,
/// then GOAWAY with HTTP_1_1_REQUIRED) and returns `None`; else returns what it read.
async fn http1_or_refuse<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    let mut read = Vec::with_capacity(H2_PREFACE.len());
    let mut buf = [0u8; 64];
    while read.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&read) {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => read.extend_from_slice(&buf[..n]),
        }
    }
    if !read.starts_with(H2_PREFACE) {
        return Some(read);
    }
    let debug = b"keyledger speaks HTTP/1.1";
    let mut frames = vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    let length = 8 + debug.len();
    frames.extend_from_slice(&[0, 0, length as u8, 0x7, 0, 0, 0, 0, 0]);
    frames.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x0d]);
    frames.extend_from_slice(debug);
    let _ = stream.write_all(&frames).await;
    let _ = stream.shutdown().await;
    None
}

/// What every connection is served with.
struct Served {
    app: NormalizePath<Router>,
    limits: ServerLimits,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
}

/// Serves one connection (after its TLS handshake, with `tls`) until it closes, times
/// out, is evicted, or the server stops.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    served: Served,
    tls: Option<Arc<ServerTls>>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let state = Arc::new(Connection::new());
    // Waiting for its first request from now: the header timeout runs.
    state.head_started.store(1, Ordering::Release);
    let id = served.registry.add(state.clone());
    // The handshake and the first request's head share one header timeout.
    let deadline = tokio::time::Instant::now() + served.limits.header_timeout;
    match tls {
        None => serve_stream(stream, peer, None, &served, (&state, deadline)).await,
        Some(tls) => {
            let accepted = tokio::select! {
                accepted = tokio::time::timeout_at(deadline, tls.acceptor().accept(stream)) => accepted,
                () = state.evict.notified() => Ok(Err(std::io::ErrorKind::ConnectionAborted.into())),
            };
            match accepted {
                Ok(Ok(stream)) => {
                    let certificate = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(<[_]>::first)
                        .map(|c| ClientCertificate(Arc::new(c.clone().into_owned())));
                    serve_stream(stream, peer, certificate, &served, (&state, deadline)).await;
                }
                // A client that does not trust the certificate, speaks plain HTTP to
                // the HTTPS port, or presents an unverified client certificate.
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
    served.registry.remove(id);
}

/// Serves HTTP/1.1 on `stream` until it closes, times out, is evicted, or the server
/// stops.
async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut stream: S,
    peer: SocketAddr,
    certificate: Option<ClientCertificate>,
    served: &Served,
    (state, deadline): (&Arc<Connection>, tokio::time::Instant),
) {
    let limits = served.limits;
    let start = tokio::select! {
        start = tokio::time::timeout_at(deadline, http1_or_refuse(&mut stream)) => start,
        () = state.evict.notified() => Ok(None),
    };
    let Ok(Some(prefix)) = start else {
        return;
    };
    let io = TokioIo::new(Watched {
        inner: stream,
        prefix,
        connection: state.clone(),
    });
    let service = hyper::service::service_fn({
        let state = state.clone();
        move |mut request: hyper::Request<hyper::body::Incoming>| {
            // In flight until the response body is sent or dropped.
            let guard = InFlight::start(&state);
            request.extensions_mut().insert(ConnectInfo(peer));
            if let Some(c) = &certificate {
                request.extensions_mut().insert(c.clone());
            }
            let app = served.app.clone();
            async move {
                let response = app.oneshot(request.map(axum::body::Body::new)).await?;
                Ok::<_, std::convert::Infallible>(response.map(|body| {
                    axum::body::Body::new(body.map_frame(move |frame| {
                        let _ = &guard;
                        frame
                    }))
                }))
            }
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        // The watchdog below times idle connections and request heads.
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    loop {
        let wait = state.deadline(&limits).unwrap_or(Duration::from_secs(1));
        tokio::select! {
            _ = conn.as_mut() => break,
            () = state.evict.notified() => {
                if state.waiting() {
                    break;
                }
                // Busy after all: a candidate again once it waits.
                state.evicted.store(false, Ordering::Release);
            }
            () = tokio::time::sleep(wait.min(Duration::from_secs(1))) => {
                if state.deadline(&limits).is_some_and(|d| d.is_zero()) {
                    break;
                }
            }
            () = served.shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(10), conn.as_mut()).await;
                break;
            }
        }
    }
}
