//! The webhook HTTP/1 server: its own accept loop over hyper, so that no client can hold the
//! process's resources for long.
//!
//! - At most `max_connections` connections are served at once (a semaphore; further ones wait
//!   in the listen queue), and never more than the descriptor limit leaves room for beside
//!   those open at the start ([`RESERVED_DESCRIPTORS`] more stay free for the log, the catalog
//!   and data files).
//! - A connection must deliver a request's headers within `header_timeout_seconds` of being
//!   accepted or of sending the request's first byte, the body within `body_timeout_seconds`
//!   (408), and is closed after `idle_timeout_seconds` between requests.
//! - Accept errors, running out of descriptors included (EMFILE/ENFILE), are waited out with a
//!   back-off: the server keeps serving, and the process keeps committing.
//!
//! A request is read, verified ([`super::signature`]) and appended to the write-ahead log
//! ([`super::wal`]) before it is answered 200; a failed write is answered 503 with
//! `Retry-After`.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::routes::{Routes, split};
use super::signature::{Providers, Refusal};
use super::wal::{Stored, Wal};
use crate::ingest::config::WebhookConfig;

/// Descriptors left to the rest of the process when the descriptor limit caps connections.
pub(super) const RESERVED_DESCRIPTORS: u64 = 64;
/// What a 503 asks the sender to wait before retrying (seconds).
const RETRY_AFTER_SECONDS: u64 = 30;

/// The server's timeouts and limits.
#[derive(Debug, Clone)]
pub(super) struct Limits {
    pub header: Duration,
    pub body: Duration,
    pub idle: Duration,
    pub max_connections: usize,
    pub max_body: usize,
}

impl Limits {
    pub fn new(config: &WebhookConfig, max_body_kb: usize) -> Self {
        Self {
            header: Duration::from_secs_f64(config.header_timeout_seconds),
            body: Duration::from_secs_f64(config.body_timeout_seconds),
            idle: Duration::from_secs_f64(config.idle_timeout_seconds),
            max_connections: config.max_connections.max(1),
            max_body: max_body_kb * 1024,
        }
    }
}

/// What the connections share.
pub(super) struct Server {
    pub providers: Providers,
    pub routes: Routes,
    /// Each lane's log (see [`Routes`]).
    pub wals: Vec<Mutex<Wal>>,
    /// Set on SIGINT/SIGTERM: requests get 503 with `Retry-After` (the sender retries them
    /// against the next run), so the source can read its logs to their end and exit.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
}

/// Serves `listener` for as long as the process runs.
pub(super) async fn serve(listener: TcpListener, server: Arc<Server>, limits: Limits) {
    let permits = Arc::new(Semaphore::new(connection_cap(limits.max_connections)));
    let limits = Arc::new(limits);
    loop {
        let permit = permits.clone().acquire_owned().await.expect("the connection semaphore is never closed");
        let stream = accept(&listener).await;
        tokio::spawn(serve_connection(stream, server.clone(), limits.clone(), permit));
    }
}

/// `configured`, lowered to what the descriptor limit (`ulimit -n`) leaves room for beside the
/// descriptors open now and [`RESERVED_DESCRIPTORS`].
fn connection_cap(configured: usize) -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return configured;
    }
    let open = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
    let room = (limit.rlim_cur as u64).saturating_sub(open + RESERVED_DESCRIPTORS).max(8);
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    if room < configured {
        tracing::warn!(
            "webhook server: serving at most {room} connections at once, not max_connections = {configured}: the \
             descriptor limit is {} and {open} are open (raise `ulimit -n` for more)",
            limit.rlim_cur
        );
        return room;
    }
    configured
}

/// The next connection. Errors (out of descriptors, out of memory) are retried with a back-off
/// up to a second: the server never stops accepting.
async fn accept(listener: &TcpListener) -> TcpStream {
    let mut backoff = Duration::from_millis(10);
    let mut failing = false;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if failing {
                    tracing::warn!("webhook server: accepting connections again");
                }
                return stream;
            }
            // The client gave up before we took the connection.
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted) => {}
            Err(e) => {
                if !failing {
                    let hint = match e.raw_os_error() {
                        Some(libc::EMFILE) | Some(libc::ENFILE) => " (out of file descriptors: raise `ulimit -n` or lower max_connections)",
                        _ => "",
                    };
                    tracing::warn!("webhook server: cannot accept a connection: {e}{hint}; retrying");
                    failing = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Where a connection is, for its timeouts.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request's headers, since this instant (accepted, or first byte after idle).
    Head(Instant),
    /// A request is being read or answered (the handler bounds the body's read).
    Busy,
    /// Between requests, since this instant.
    Idle(Instant),
}

struct Watch(Mutex<Phase>);

impl Watch {
    fn get(&self) -> Phase {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    /// Bytes arrived: an idle connection starts a request.
    fn bytes_arrived(&self) {
        let mut phase = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
        }
    }
}

/// Completes when the connection overstays its phase's timeout, saying which.
async fn watchdog(watch: &Watch, limits: &Limits) -> &'static str {
    loop {
        let now = Instant::now();
        let deadline = match watch.get() {
            Phase::Head(since) => Some((since + limits.header, "its request headers did not arrive within header_timeout_seconds")),
            Phase::Idle(since) => Some((since + limits.idle, "idle for idle_timeout_seconds")),
            Phase::Busy => None,
        };
        match deadline {
            Some((at, why)) if now >= at => return why,
            Some((at, _)) => tokio::time::sleep((at - now).min(Duration::from_secs(1))).await,
            None => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// A TCP stream that tells its [`Watch`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.watch.bytes_arrived();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Serves one connection's requests until it closes or overstays a timeout (then it is dropped).
async fn serve_connection(stream: TcpStream, server: Arc<Server>, limits: Arc<Limits>, _permit: OwnedSemaphorePermit) {
    let watch = Arc::new(Watch(Mutex::new(Phase::Head(Instant::now()))));
    let io = TokioIo::new(Watched { stream, watch: watch.clone() });
    let service = {
        let (watch, limits) = (watch.clone(), limits.clone());
        service_fn(move |request| {
            let (server, limits, watch) = (server.clone(), limits.clone(), watch.clone());
            async move {
                watch.set(Phase::Busy);
                let response = handle(&server, request, &limits).await;
                watch.set(Phase::Idle(Instant::now()));
                Ok::<_, Infallible>(response)
            }
        })
    };
    let connection = http1::Builder::new().keep_alive(true).header_read_timeout(None::<Duration>).serve_connection(io, service);
    tokio::select! {
        result = connection => {
            if let Err(e) = result {
                tracing::debug!("webhook connection ended: {e}");
            }
        }
        why = watchdog(&watch, &limits) => tracing::debug!("webhook connection closed: {why}"),
    }
}

fn respond(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text + "\n")));
    *response.status_mut() = status;
    response
}

/// Answers one request: route, read the body (bounded in size and time), verify, log.
async fn handle(server: &Arc<Server>, request: Request<Incoming>, limits: &Limits) -> Response<Full<Bytes>> {
    if server.stopping.load(std::sync::atomic::Ordering::Relaxed) {
        let mut response = respond(StatusCode::SERVICE_UNAVAILABLE, "shutting down, retry later".into());
        response.headers_mut().insert(hyper::header::RETRY_AFTER, RETRY_AFTER_SECONDS.into());
        return response;
    }
    let path = request.uri().path();
    let Some(provider) = path.strip_prefix("/webhooks/").filter(|p| !p.is_empty() && !p.contains('/')) else {
        return respond(StatusCode::NOT_FOUND, format!("no route for {path}; webhooks are POSTed to /webhooks/<provider>"));
    };
    let provider = provider.to_string();
    if !server.providers.serves(&provider) {
        return respond(StatusCode::NOT_FOUND, format!("no webhook route for `{provider}`"));
    }
    if request.method() != Method::POST {
        let mut response = respond(StatusCode::METHOD_NOT_ALLOWED, "webhooks are POSTed".into());
        response.headers_mut().insert(hyper::header::ALLOW, hyper::header::HeaderValue::from_static("POST"));
        return response;
    }
    let too_large = || respond(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over max_body_kb ({} KiB)", limits.max_body / 1024));
    let declared = request.headers().get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits.max_body) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    let body = match tokio::time::timeout(limits.body, Limited::new(body, limits.max_body).collect()).await {
        Err(_) => return respond(StatusCode::REQUEST_TIMEOUT, "the body did not arrive within body_timeout_seconds".into()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Ok(Err(e)) => return respond(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}")),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let envelope = match server.providers.check(&provider, &parts.method, &parts.uri, &parts.headers, &body) {
        Ok(envelope) => envelope,
        Err(Refusal(status, why)) => return respond(status, why),
    };
    let writer = server.clone();
    // Each event of the delivery into its lane's log; stored when any is new (a retry after a
    // failed write stores the rest and skips those already in).
    let stored = tokio::task::spawn_blocking(move || {
        let mut stored = Stored::Duplicate;
        for event in split(envelope) {
            let lane = writer.routes.lane(&event.provider, event.event_type.as_deref());
            let mut wal = writer.wals[lane].lock().map_err(|_| anyhow::anyhow!("the write-ahead log lock is poisoned"))?;
            if wal.append(&event)? == Stored::New {
                stored = Stored::New;
            }
        }
        Ok(stored)
    })
    .await
    .map_err(anyhow::Error::new)
    .and_then(|r| r);
    match stored {
        Ok(Stored::New) => respond(StatusCode::OK, "stored".into()),
        Ok(Stored::Duplicate) => respond(StatusCode::OK, "duplicate, already stored".into()),
        Err(e) => {
            tracing::warn!("webhook `{provider}`: answered 503, the event could not be stored: {e:#}");
            let mut response = respond(StatusCode::SERVICE_UNAVAILABLE, "cannot store the event now, retry later".into());
            response.headers_mut().insert(hyper::header::RETRY_AFTER, RETRY_AFTER_SECONDS.into());
            response
        }
    }
}
