//! The listeners: an accept loop of menshen's own around hyper (HTTP/1.1 and
//! h2c), so that slow or idle connections cannot lock clients out.
//!
//! - A new connection must send a complete request head within
//!   [`ConnectionLimits::header_read_timeout`], whether it sends nothing or
//!   half a head; then it is closed.
//! - Between requests a connection may stay open (keep-alive) for
//!   [`ConnectionLimits::idle_timeout`], a partly sent next head included.
//! - A request body must arrive whole within
//!   [`ConnectionLimits::body_timeout`] of its head.
//! - At most [`ConnectionLimits::max_connections`] connections are open at
//!   once per listener; beyond that new ones wait in the kernel's backlog
//!   until one closes (which the timeouts above guarantee), instead of
//!   running the process out of file descriptors.
//!
//! HTTP/1.1 requests without exactly one `Host` header are answered 400.
//! Handlers see the peer's address as `ConnectInfo<SocketAddr>`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, Version, header};
use axum::response::IntoResponse;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use menshen_model::vocab::seconds;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::api::error::ApiError;

/// How long connections may take, and how many there may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A new connection's first request head must be complete within this.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress is closed after this.
    pub idle_timeout: Duration,
    /// A request body must be complete within this of its head.
    pub body_timeout: Duration,
    /// Most connections open at once on the listener.
    pub max_connections: usize,
}

/// Default of `--header-read-timeout`.
pub const DEFAULT_HEADER_READ_TIMEOUT: &str = "30s";
/// Default of `--idle-timeout`.
pub const DEFAULT_IDLE_TIMEOUT: &str = "60s";
/// Default of `--body-timeout`.
pub const DEFAULT_BODY_TIMEOUT: &str = "30s";

/// Defaults of the public listener.
pub const DEFAULT_LIMITS: ConnectionLimits = ConnectionLimits {
    header_read_timeout: seconds(DEFAULT_HEADER_READ_TIMEOUT),
    idle_timeout: seconds(DEFAULT_IDLE_TIMEOUT),
    body_timeout: seconds(DEFAULT_BODY_TIMEOUT),
    max_connections: 10_000,
};

/// Default cap of the metrics listener: a few scrapers.
pub const DEFAULT_METRICS_MAX_CONNECTIONS: usize = 64;

/// How long a connection being closed (by a timeout or at shutdown) with no
/// request in progress may take to say goodbye before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How often a connection with requests in progress looks at its timeouts.
const BUSY_RECHECK: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` completes, then stops
/// accepting, lets requests in flight finish and returns once every
/// connection is closed.
/// `open` follows the number of open connections.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    open: Gauge,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = limits.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The first head's deadline is kept below, for HTTP/1 and HTTP/2 alike,
    // and the idle deadline after it; hyper's own header timer would also
    // cut keep-alive connections short.
    builder.http1().keep_alive(true).header_read_timeout(None);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    let mut last_accept_error: Option<Instant> = None;
    loop {
        // At the cap, wait for a slot before accepting: new connections
        // wait in the backlog instead of failing for want of descriptors.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    if !is_connection_error(&err) {
                        // Out of descriptors or similar: say so (once a
                        // second at most) and give the system a moment.
                        if last_accept_error.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                            tracing::warn!(error = %err, "accept failed");
                            last_accept_error = Some(Instant::now());
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses are written whole; Nagle's algorithm would only delay them.
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            app: app.clone(),
            peer,
            limits,
            builder: builder.clone(),
            stop: stop_rx.clone(),
        };
        open.inc();
        let open = open.clone();
        tokio::spawn(async move {
            connection.run(TokioIo::new(stream)).await;
            open.dec();
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection returns its slot when it is done.
    let _ = slots.acquire_many(max as u32).await;
    Ok(())
}

/// Errors of one connection that `accept` reports; the listener is fine.
fn is_connection_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset | Interrupted
    )
}

/// When a connection last changed between busy and idle.
#[derive(Default)]
struct Activity {
    /// Requests in progress.
    in_flight: AtomicUsize,
    /// Requests begun.
    begun: AtomicU64,
    /// Milliseconds after the connection's start when the last request ended.
    idle_since_ms: AtomicU64,
}

/// Marks a request in progress until dropped.
struct Busy {
    activity: Arc<Activity>,
    start: Instant,
}

impl Busy {
    fn new(activity: Arc<Activity>, start: Instant) -> Busy {
        activity.begun.fetch_add(1, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy { activity, start }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.activity.idle_since_ms.store(ms, Ordering::Relaxed);
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    /// When the connection is due to be closed, as known now; `None` while
    /// a request is in progress.
    fn deadline(&self, start: Instant, limits: &ConnectionLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.begun.load(Ordering::Relaxed) == 0 {
            return Some(start + limits.header_read_timeout);
        }
        let idle_since = Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed));
        Some(start + idle_since + limits.idle_timeout)
    }
}

struct Connection {
    app: Router,
    peer: SocketAddr,
    limits: ConnectionLimits,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self, io: TokioIo<tokio::net::TcpStream>) {
        let start = Instant::now();
        let activity = Arc::new(Activity::default());
        let service = {
            let activity = activity.clone();
            let app = self.app.clone();
            let peer = self.peer;
            let body_timeout = self.limits.body_timeout;
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let busy = Busy::new(activity.clone(), start);
                let app = app.clone();
                async move {
                    let response = handle(app, request, peer, body_timeout).await;
                    drop(busy);
                    Ok::<_, Infallible>(response)
                }
            })
        };
        let builder = self.builder.clone();
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        // Set once the connection is being closed: when to drop it if it has
        // not closed by itself.
        let mut closing: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let wake = match (closing, activity.deadline(start, &self.limits)) {
                (Some(at), Some(_)) => at,
                (Some(_), None) | (None, None) => now + BUSY_RECHECK,
                (None, Some(at)) => at,
            };
            tokio::select! {
                _ = conn.as_mut() => return,
                changed = self.stop.changed(), if closing.is_none() => {
                    let _ = changed;
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + CLOSE_GRACE);
                }
                () = tokio::time::sleep_until(wake) => {
                    let due = activity.deadline(start, &self.limits);
                    match closing {
                        Some(at) if due.is_some() && Instant::now() >= at => return,
                        Some(_) => {}
                        None => {
                            if due.is_some_and(|at| Instant::now() >= at) {
                                tracing::debug!(peer = %self.peer, "closing a slow or idle connection");
                                conn.as_mut().graceful_shutdown();
                                closing = Some(Instant::now() + CLOSE_GRACE);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Checks what the router cannot, then hands the request to it.
async fn handle(
    app: Router,
    request: Request<Incoming>,
    peer: SocketAddr,
    body_timeout: Duration,
) -> Response<Body> {
    if let Some(problem) = host_problem(&request) {
        let mut response = ApiError::bad_request("invalid_host", problem).into_response();
        // The client got the head wrong; do not trust it with another.
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return response;
    }
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(ConnectInfo(peer));
    let body = if http_body::Body::is_end_stream(&body) {
        Body::new(body)
    } else {
        Body::new(DeadlineBody::new(body, body_timeout))
    };
    match app.oneshot(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Why an HTTP/1.1 request's `Host` is unacceptable (RFC 9112 §3.2: exactly
/// one), if it is.
fn host_problem<B>(request: &Request<B>) -> Option<&'static str> {
    if request.version() != Version::HTTP_11 {
        return None;
    }
    match request.headers().get_all(header::HOST).iter().count() {
        1 => None,
        0 => Some("an HTTP/1.1 request needs a Host header"),
        _ => Some("an HTTP/1.1 request must have exactly one Host header"),
    }
}

/// The request body took longer than the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// A request body that fails once its deadline has passed. The timer is
/// set only when the body is first not ready.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Instant::now() + timeout,
            timeout,
            sleep: None,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Raises the soft limit on open files to the hard limit, so that the
/// connection caps, not the descriptor limit, bound what is open. Returns
/// the limit in force.
// `rlim_t` is u64 on some systems only.
#[allow(clippy::unnecessary_cast)]
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct
        // passed to them.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    tracing::debug!(
                        from = limit.rlim_cur as u64,
                        to = raised.rlim_cur as u64,
                        "raised the open file limit"
                    );
                    return Some(raised.rlim_cur as u64);
                }
            }
        }
        Some(limit.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, hosts: &[&str]) -> Request<()> {
        let mut builder = Request::builder().uri("/").version(version);
        for host in hosts {
            builder = builder.header(header::HOST, *host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn http11_needs_exactly_one_host() {
        assert_eq!(host_problem(&request(Version::HTTP_11, &["a"])), None);
        assert!(host_problem(&request(Version::HTTP_11, &[])).is_some());
        assert!(host_problem(&request(Version::HTTP_11, &["a", "b"])).is_some());
        // HTTP/1.0 may leave it out; HTTP/2 has :authority.
        assert_eq!(host_problem(&request(Version::HTTP_10, &[])), None);
        assert_eq!(host_problem(&request(Version::HTTP_2, &[])), None);
    }

    #[test]
    fn deadlines_follow_the_connection_state() {
        let limits = DEFAULT_LIMITS;
        let start = Instant::now();
        let activity = Arc::new(Activity::default());
        assert_eq!(
            activity.deadline(start, &limits),
            Some(start + limits.header_read_timeout)
        );
        let busy = Busy::new(activity.clone(), start);
        assert_eq!(activity.deadline(start, &limits), None);
        drop(busy);
        let due = activity.deadline(start, &limits).unwrap();
        assert!(
            due >= start + limits.idle_timeout
                && due < Instant::now() + limits.idle_timeout + Duration::from_millis(1)
        );
    }

    #[test]
    #[allow(clippy::unnecessary_cast)]
    fn the_fd_limit_is_raised_to_the_hard_limit() {
        let limit = raise_fd_limit().unwrap();
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: see raise_fd_limit.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) };
        assert_eq!(now.rlim_cur as u64, limit);
        assert_eq!(now.rlim_cur, now.rlim_max);
    }
}
