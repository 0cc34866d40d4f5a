//! The read-only HTTP endpoint of `hangwatch up`: `/metrics` for Prometheus, `/healthz` and
//! `/readyz` for orchestrators, a JSON API for scripts, and a status page for people.
//!
//! # Theory of operation
//!
//! Off unless the config says `http = "ADDRESS:PORT"` (or `hangwatch up --http ADDR`). The
//! server runs on the supervisor's own current-thread runtime as tasks of its own (see
//! [`server`]) and never touches the loop's state: what it shows comes from
//!
//! - a status request sent through the loop's channel, exactly like a control-socket client's
//!   (`Request::Status`), answered between two events;
//! - a [`Telemetry`] the loop feeds as it emits each event (counters, recent events, the
//!   broadcast behind the page's live timeline), probe results and notify datagrams;
//! - `/proc`, read off the runtime's thread, for each service tree's memory and CPU time;
//! - the incident files in the state directory.
//!
//! Nothing here can change a service: the control socket stays the only way to do that.
//! Nothing runs while nobody is connected: no timer, no polling.
//!
//! # Access
//!
//! A loopback address needs nothing more. Any other address requires `http_token_file`, and
//! then every request must carry `Authorization: Bearer TOKEN` (compared in constant time).

mod api;
pub mod health;
mod metrics;
mod page;
mod server;
mod telemetry;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use health::{Check, Health, Problem, decide};
pub use server::HttpServer;
pub(crate) use telemetry::{ProbeKind, Telemetry};
use tokio::sync::{Semaphore, mpsc};

use crate::up::Msg;

/// The file in the state directory that holds the address the endpoint listens on (useful when
/// the config asked for port 0); removed when the supervisor ends.
pub const ADDRESS_FILE: &str = "http.address";

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The token file could not be read.
    #[error("failed to read the HTTP token file {path}: {source}")]
    Token {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The token file holds no token.
    #[error("the HTTP token file {path} is empty")]
    EmptyToken {
        /// The file.
        path: PathBuf,
    },
    /// The address could not be bound.
    #[error("failed to listen on {listen} for HTTP: {source}")]
    Bind {
        /// The address.
        listen: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
}

/// What the supervisor hands the endpoint.
pub(crate) struct HttpSpec<'a> {
    pub(crate) config: &'a hangwatch_config::Http,
    pub(crate) tx: mpsc::Sender<Msg>,
    pub(crate) telemetry: Arc<Telemetry>,
    pub(crate) state_dir: &'a Path,
    pub(crate) incidents_dir: PathBuf,
    pub(crate) own_pid: i32,
}

/// Reads the token, binds, serves, and writes the address to [`ADDRESS_FILE`].
pub(crate) async fn start(spec: HttpSpec<'_>) -> Result<HttpServer, HttpError> {
    let token = match &spec.config.token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    let listen = spec.config.listen;
    let context = server::Context {
        tx: spec.tx,
        telemetry: spec.telemetry,
        token,
        open: spec.config.open.iter().map(|open| open.path()).collect(),
        incidents_dir: spec.incidents_dir,
        own_pid: spec.own_pid,
        streams: Arc::new(Semaphore::new(server::MAX_STREAMS)),
    };
    let mut server = server::start(listen, context)
        .await
        .map_err(|source| HttpError::Bind { listen, source })?;
    let address = format!("{}\n", server.local_addr());
    let path = spec.state_dir.join(ADDRESS_FILE);
    match std::fs::write(&path, address) {
        Ok(()) => server.address_file = Some(path),
        Err(err) => tracing::warn!(%err, "cannot write the HTTP address file"),
    }
    tracing::info!(address = %server.local_addr(), "serving HTTP");
    Ok(server)
}

fn read_token(path: &Path) -> Result<Vec<u8>, HttpError> {
    let bytes = std::fs::read(path).map_err(|source| HttpError::Token {
        path: path.to_owned(),
        source,
    })?;
    let token = bytes.trim_ascii();
    if token.is_empty() {
        return Err(HttpError::EmptyToken {
            path: path.to_owned(),
        });
    }
    Ok(token.to_vec())
}
