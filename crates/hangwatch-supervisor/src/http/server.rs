//! The listener: accepts connections, enforces the limits and the token, and routes requests.
//!
//! Every connection is a task of its own on the supervisor's runtime; none holds anything the
//! loop needs. What a request needs from the loop it asks through the loop's channel, like a
//! client of the control socket, with a deadline; the loop answers between two events.
//!
//! # Limits
//!
//! A client that never finishes its headers is dropped after [`HEADER_WITHIN`]; a connection
//! lives at most [`CONNECTION_LIFETIME`] (the page's event stream reconnects by itself); at
//! most [`MAX_CONNECTIONS`] are served at once and [`MAX_STREAMS`] of them may be event
//! streams; request heads are read into a buffer of [`MAX_HEAD`] bytes; no route reads a body,
//! and a request that announces one is refused. Nothing is spent while nobody is connected:
//! no timer runs until a connection arrives.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::{api, page};
use crate::up::Msg;

/// How long a client has to send a request's head.
pub(crate) const HEADER_WITHIN: Duration = Duration::from_secs(5);
/// The longest a connection is kept, event streams included.
pub(crate) const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);
/// Connections served at once; more are closed at once.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// Event streams (`/api/stream`) open at once.
pub(crate) const MAX_STREAMS: usize = 16;
/// The read buffer of a connection, which bounds a request's head.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// What every request handler may use.
pub(crate) struct Context {
    /// The loop's channel.
    pub(crate) tx: mpsc::Sender<Msg>,
    pub(crate) telemetry: Arc<super::Telemetry>,
    /// The bearer token, when one is required.
    pub(crate) token: Option<Vec<u8>>,
    /// Paths served without the token (`http_open`).
    pub(crate) open: Vec<&'static str>,
    /// Where incident reports are.
    pub(crate) incidents_dir: PathBuf,
    /// hangwatch's PID: the root of the process scan for resource metrics.
    pub(crate) own_pid: i32,
    pub(crate) streams: Arc<Semaphore>,
}

/// The running listener; dropping it stops accepting (connections in flight end on their own
/// deadline).
#[derive(Debug)]
pub struct HttpServer {
    accept: JoinHandle<()>,
    local: SocketAddr,
    /// The file that tells the address, removed with the server.
    pub(crate) address_file: Option<PathBuf>,
}

impl HttpServer {
    /// The address it listens on (the port chosen by the system when the config said 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.accept.abort();
        if let Some(path) = &self.address_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds `listen` and serves.
pub(crate) async fn start(listen: SocketAddr, context: Context) -> io::Result<HttpServer> {
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let context = Arc::new(context);
    let served = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let accept = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::debug!(%err, "http accept");
                    // EMFILE and the like: give the fds a moment to come back.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = served.clone().try_acquire_owned() else {
                // Closing is the cheapest answer to a flood.
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let context = context.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |request| {
                    let context = context.clone();
                    async move { Ok::<_, Infallible>(handle(&context, request).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_WITHIN)
                    .max_buf_size(MAX_HEAD)
                    .serve_connection(TokioIo::new(stream), service);
                match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::debug!(%err, "http connection"),
                    Err(_) => tracing::debug!("http connection closed at the end of its lifetime"),
                }
            });
        }
    });
    Ok(HttpServer {
        accept,
        local,
        address_file: None,
    })
}

pub(crate) type Body = BoxBody<Bytes, Infallible>;

async fn handle(context: &Context, request: Request<Incoming>) -> Response<Body> {
    if let Some(token) = &context.token
        && !context.open.contains(&request.uri().path())
        && !authorized(request.headers().get(header::AUTHORIZATION), token)
    {
        let mut response = text(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"hangwatch\""),
        );
        return response;
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "read-only: only GET and HEAD; changes go through the control socket\n",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if has_body(&request) {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "no request takes a body\n");
    }
    let head = request.method() == Method::HEAD;
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let mut response = route(context, &path, &query).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if head {
        *response.body_mut() = Full::new(Bytes::new()).boxed();
    }
    response
}

async fn route(context: &Context, path: &str, query: &str) -> Response<Body> {
    match path {
        "/" | "/index.html" => page::index(),
        "/assets/app.js" => page::asset(page::APP_JS, "text/javascript; charset=utf-8"),
        "/assets/style.css" => page::asset(page::STYLE_CSS, "text/css; charset=utf-8"),
        "/metrics" => api::metrics(context).await,
        "/healthz" => api::health(context, super::Check::Alive).await,
        "/readyz" => api::health(context, super::Check::Ready).await,
        "/api/status" => api::status(context).await,
        "/api/events" => api::events(context, query),
        "/api/stream" => api::stream(context, query),
        "/api/incidents" => api::incidents(context),
        _ => {
            if let Some(id) = path.strip_prefix("/api/incidents/") {
                api::incident(context, id).await
            } else if let Some(id) = path.strip_prefix("/incidents/") {
                page::incident(context, id).await
            } else {
                text(StatusCode::NOT_FOUND, "not found\n")
            }
        }
    }
}

/// Whether the request announces a body (a length above zero, or chunks).
fn has_body(request: &Request<Incoming>) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|len| len.as_bytes() != b"0")
}

/// Whether `header` is `Bearer TOKEN` with the right token, compared in constant time.
fn authorized(header: Option<&HeaderValue>, token: &[u8]) -> bool {
    let Some(given) = header.and_then(|h| h.as_bytes().strip_prefix(b"Bearer ")) else {
        return false;
    };
    constant_time_eq(given.trim_ascii(), token)
}

/// Compares in a time that depends on the lengths only, so the time of a refusal does not
/// tell how many leading bytes of a guess were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut differ = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        differ |= x ^ y;
    }
    std::hint::black_box(differ) == 0
}

pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => respond(status, "application/json", Bytes::from(body)),
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the reply\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secrex"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
        let ok = HeaderValue::from_static("Bearer secret");
        assert!(authorized(Some(&ok), b"secret"));
        let basic = HeaderValue::from_static("Basic secret");
        assert!(!authorized(Some(&basic), b"secret"));
        assert!(!authorized(None, b"secret"));
    }
}
