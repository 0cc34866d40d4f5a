//! The control protocol: what `hangwatch status`, `stop`, `down`… say to a running supervisor
//! over its Unix socket (`STATE/control.sock`), and what it answers.
//!
//! # Wire format
//!
//! Every message is one *frame*: a 4-byte big-endian length, then that many bytes of JSON.
//! A length prefix (rather than newline-delimited JSON) lets the reader refuse an oversized
//! frame before reading it: a request may be at most [`MAX_REQUEST`] bytes, a reply at most
//! [`MAX_REPLY`].
//!
//! # Conversation
//!
//! The client opens with [`Hello`]; the supervisor answers [`Reply::Welcome`] when it speaks
//! that [`VERSION`], or [`Reply::Error`] with [`ErrorKind::Version`] and closes. Then each
//! [`Request`] gets exactly one [`Reply`], in order, on the same connection. A request that
//! waits for something (`stop` returns when the service has stopped, `down` when everything
//! has) simply answers later. A malformed request gets [`ErrorKind::BadRequest`] and the
//! connection stays usable; an oversized one gets [`ErrorKind::TooLarge`] and is closed (its
//! bytes cannot be skipped safely without reading them).
//!
//! Fields are only ever added; a reader ignores the fields it does not know.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::report::IncidentRecord;

/// The protocol version this build speaks. Bumped only for a change an older peer would
/// misread; added fields do not bump it.
pub const VERSION: u32 = 1;

/// The largest request frame the supervisor reads (64 KiB): requests are small.
pub const MAX_REQUEST: usize = 64 * 1024;

/// The largest reply frame a client reads (16 MiB): the status of thousands of services, or a
/// diagnosis with Python stacks, stays far below it.
pub const MAX_REPLY: usize = 16 * 1024 * 1024;

/// The first message of a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the client speaks ([`VERSION`]).
    pub version: u32,
    /// Who is asking, for the supervisor's log (e.g. `hangwatch 0.1.0`).
    pub client: String,
}

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    /// The supervisor and every service, or one service.
    Status {
        /// Only this service.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
    },
    /// Start a service that is down (stopped by `stop`, exited, or given up); answered when it
    /// is ready or failed to start.
    Start {
        /// The service.
        service: String,
    },
    /// Stop a service (its stop signal, grace, then KILL, whole tree) and keep it down until
    /// `start`; answered when it is down.
    Stop {
        /// The service.
        service: String,
    },
    /// Stop a service if it runs and start it again; answered when it is ready or failed to
    /// start.
    Restart {
        /// The service.
        service: String,
    },
    /// Shut everything down (the bounded shutdown of SIGTERM); answered when it is done, just
    /// before the supervisor exits.
    Down,
    /// Diagnose a running service without stopping it; the report is also kept as an incident.
    Diagnose {
        /// The service.
        service: String,
        /// The sampling window; the supervisor's default when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sample_ms: Option<u64>,
    },
    /// Read the config file again and apply the difference.
    Reload,
}

/// What the supervisor answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum Reply {
    /// The answer to [`Hello`].
    Welcome(Welcome),
    /// The answer to [`Request::Status`].
    Status(Status),
    /// The answer to `start`, `stop` and `restart`: where the service ended up.
    Service(ServiceStatus),
    /// The answer to `start`, `stop` and `restart` of a service with `replicas`: where each
    /// copy ended up.
    Services {
        /// Each copy, in order.
        services: Vec<ServiceStatus>,
    },
    /// The answer to [`Request::Down`].
    Down(DownReport),
    /// The answer to [`Request::Diagnose`].
    Diagnosis(Diagnosis),
    /// The answer to [`Request::Reload`].
    Reloaded(ReloadReport),
    /// The request failed; nothing changed unless the message says otherwise.
    Error(ErrorReply),
}

/// The supervisor's greeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The protocol version it speaks.
    pub version: u32,
    /// Its PID.
    pub pid: i32,
    /// Its instance token (the same as in `instance.json` and `HANGWATCH_ID`).
    pub instance: String,
    /// The config file it runs.
    pub config: PathBuf,
    /// Its state directory.
    pub state_dir: PathBuf,
}

/// The supervisor and its services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The supervisor's PID.
    pub pid: i32,
    /// How long it has run, in milliseconds.
    pub uptime_ms: u64,
    /// The config file it runs.
    pub config: PathBuf,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// Set while it shuts down: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutting_down: Option<String>,
    /// The services, in config order.
    pub services: Vec<ServiceStatus>,
    /// Notify datagrams accepted (their sender was in a service's tree) and refused (it was
    /// in none, or had exited before it could be placed), since the supervisor started.
    #[serde(default)]
    pub notify: NotifyCounts,
}

/// Counts of the notify socket's datagrams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyCounts {
    /// Accepted.
    pub accepted: u64,
    /// Refused.
    pub rejected: u64,
}

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Not started: waiting for its dependencies to be ready.
    Waiting,
    /// Started, not ready yet.
    Starting,
    /// Running and ready.
    Ready,
    /// Waiting out its backoff before a restart.
    Backoff,
    /// Stalled; a diagnosis runs before the stop.
    Diagnosing,
    /// Its tree is being stopped.
    Stopping,
    /// Ended, and its policy does not restart it.
    Exited,
    /// Gave up after too many restarts.
    Failed,
    /// Stopped (by `stop` or by the shutdown); stays down until `start`.
    Stopped,
}

impl State {
    /// The word shown in `hangwatch status`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Starting => "starting",
            State::Ready => "ready",
            State::Backoff => "backoff",
            State::Diagnosing => "diagnosing",
            State::Stopping => "stopping",
            State::Exited => "exited",
            State::Failed => "failed",
            State::Stopped => "stopped",
        }
    }
}

/// One service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Its name.
    pub name: String,
    /// Where it is.
    pub state: State,
    /// Its program's PID while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// How long its program has run, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_ms: Option<u64>,
    /// Restarts counted by its policy.
    pub restarts: u32,
    /// How its previous program ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<LastExit>,
    /// Its liveness deadline, when one is armed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<Heartbeat>,
    /// In backoff: milliseconds until the restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_in_ms: Option<u64>,
    /// The path of its latest incident file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_incident: Option<PathBuf>,
    /// The last `STATUS=` it sent over the notify socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_text: Option<String>,
    /// Resident memory of its whole tree, in bytes, when it runs; only in the status of one
    /// service (`hangwatch status NAME`), which scans `/proc` for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
}

/// How a program ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    /// In words: `code 0`, `KILL`.
    pub status: String,
    /// The exit code, when it exited (rather than died of a signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// Why it ended, as the event log says it (`exited`, `stalled`, `memory`, `stopped`…).
    pub reason: String,
    /// When, as Unix milliseconds.
    pub at_unix_ms: u64,
}

/// A liveness deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The source that sets it: `watchdog`, `heartbeat-file`, `output`, `probe`.
    pub source: String,
    /// Milliseconds since the last sign of life.
    pub age_ms: u64,
    /// The bound: a stall is declared when the age passes it.
    pub deadline_ms: u64,
}

/// The end of a shutdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownReport {
    /// How long it took, in milliseconds.
    pub took_ms: u64,
    /// Services whose processes all exited within their grace.
    pub clean: Vec<String>,
    /// Services that had a process killed.
    pub killed: Vec<String>,
    /// The exit code the supervisor ends with.
    pub exit_code: i32,
}

/// A live diagnosis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The service.
    pub service: String,
    /// The diagnosis as it was kept in the incident directory.
    pub incident: IncidentRecord,
    /// The report in words, as `hangwatch diagnose` prints it.
    pub text: String,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// New services, started.
    pub added: Vec<String>,
    /// Services no longer in the file, stopped.
    pub removed: Vec<String>,
    /// Services whose definition changed, restarted.
    pub changed: Vec<String>,
    /// Services left untouched.
    pub unchanged: Vec<String>,
    /// Settings of the supervisor itself that changed but apply only to the next `up`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_applied: Vec<String>,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// The kind, for scripts.
    pub kind: ErrorKind,
    /// In words.
    pub message: String,
    /// For a config that does not load: each error as `file:line:column: message`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
}

/// The kinds of [`ErrorReply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The client speaks another protocol version.
    Version,
    /// The client's user may not control this supervisor.
    Denied,
    /// The frame is not a request this supervisor understands.
    BadRequest,
    /// The frame is larger than [`MAX_REQUEST`].
    TooLarge,
    /// No service has that name.
    UnknownService,
    /// The config file does not load; `diagnostics` says where.
    Config,
    /// The supervisor is shutting down and takes no more changes.
    ShuttingDown,
    /// The request cannot be done in the service's current state, or failed.
    Failed,
}

impl ErrorReply {
    /// An error without diagnostics.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ErrorReply {
        ErrorReply {
            kind,
            message: message.into(),
            diagnostics: Vec::new(),
        }
    }
}

/// A frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer closed the connection at a frame boundary.
    #[error("the connection was closed")]
    Closed,
    /// The announced length is above the limit.
    #[error("a frame of {len} bytes is larger than the limit of {limit}")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not the JSON of the expected message.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Encodes a message as a frame (length prefix and JSON).
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut frame = vec![0; 4];
    serde_json::to_writer(&mut frame, message)?;
    let len = u32::try_from(frame.len() - 4).unwrap_or(u32::MAX);
    frame[..4].copy_from_slice(&len.to_be_bytes());
    Ok(frame)
}

/// The payload length announced by a frame header, checked against `limit`.
pub fn frame_len(header: [u8; 4], limit: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    Ok(len)
}

/// Reads one frame's payload, blocking. A clean end of stream before the header is
/// [`FrameError::Closed`].
pub fn read_frame(reader: &mut impl Read, limit: usize) -> Result<Vec<u8>, FrameError> {
    let mut header = [0; 4];
    match reader.read_exact(&mut header) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(err) => return Err(err.into()),
    }
    let len = frame_len(header, limit)?;
    let mut payload = vec![0; len];
    reader.read_exact(&mut payload)?;
    Ok(payload)
}

/// A client failed to talk to the supervisor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing listens on the socket: no supervisor runs for that state directory.
    #[error("no hangwatch is running for {}", state_dir.display())]
    NotRunning {
        /// The state directory.
        state_dir: PathBuf,
    },
    /// The socket exists but may not be used by this user.
    #[error("{}: permission denied (the supervisor serves only its own user)", socket.display())]
    Denied {
        /// The socket.
        socket: PathBuf,
    },
    /// The supervisor refused the conversation (another version, or this user).
    #[error("the supervisor refused: {}", .0.message)]
    Refused(ErrorReply),
    /// The supervisor closed the connection before answering (it may have ended).
    #[error("the supervisor closed the connection before answering")]
    Hangup,
    /// A frame could not be exchanged.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// A blocking connection to a supervisor, past the handshake.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    welcome: Welcome,
}

impl Client {
    /// Connects to the supervisor of `state_dir` (its `control.sock`) and says hello.
    /// `timeout` bounds the connection and the handshake (not later requests, which may wait
    /// for a stop).
    pub fn connect(state_dir: &Path, who: &str, timeout: Duration) -> Result<Client, ClientError> {
        let socket = state_dir.join(SOCKET_NAME);
        let (address, _dir) = socket_address(state_dir, SOCKET_NAME).map_err(|err| {
            if err.kind() == io::ErrorKind::NotFound {
                ClientError::NotRunning {
                    state_dir: state_dir.to_path_buf(),
                }
            } else {
                ClientError::Frame(FrameError::Io(err))
            }
        })?;
        let stream = UnixStream::connect(&address).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ClientError::NotRunning {
                state_dir: state_dir.to_path_buf(),
            },
            io::ErrorKind::PermissionDenied => ClientError::Denied {
                socket: socket.clone(),
            },
            _ => ClientError::Frame(FrameError::Io(err)),
        })?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(FrameError::Io)?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(FrameError::Io)?;
        let mut client = Client {
            stream,
            welcome: Welcome {
                version: 0,
                pid: 0,
                instance: String::new(),
                config: PathBuf::new(),
                state_dir: state_dir.to_path_buf(),
            },
        };
        let hello = Hello {
            version: VERSION,
            client: who.to_owned(),
        };
        client.send(&hello)?;
        match client.receive()? {
            Reply::Welcome(welcome) => client.welcome = welcome,
            Reply::Error(error) => return Err(ClientError::Refused(error)),
            _ => return Err(ClientError::Hangup),
        }
        client
            .stream
            .set_read_timeout(None)
            .map_err(FrameError::Io)?;
        Ok(client)
    }

    /// The supervisor's greeting.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Bounds every later read of a reply (`None`: wait as long as it takes, the default after
    /// the handshake). A reply that does not come in time is an I/O error (`WouldBlock` or
    /// `TimedOut`).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        self.stream
            .set_read_timeout(timeout)
            .map_err(|err| ClientError::Frame(FrameError::Io(err)))
    }

    /// Sends a request and waits for its reply (as long as it takes: `stop` waits for the
    /// service's grace).
    pub fn call(&mut self, request: &Request) -> Result<Reply, ClientError> {
        self.send(request)?;
        self.receive()
    }

    fn send<T: Serialize>(&mut self, message: &T) -> Result<(), ClientError> {
        let frame = encode(message).map_err(FrameError::Malformed)?;
        self.stream
            .write_all(&frame)
            .map_err(|err| match err.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => ClientError::Hangup,
                _ => ClientError::Frame(FrameError::Io(err)),
            })
    }

    fn receive(&mut self) -> Result<Reply, ClientError> {
        let payload = match read_frame(&mut self.stream, MAX_REPLY) {
            Ok(payload) => payload,
            Err(FrameError::Closed) => return Err(ClientError::Hangup),
            Err(FrameError::Io(err)) if err.kind() == io::ErrorKind::ConnectionReset => {
                return Err(ClientError::Hangup);
            }
            Err(err) => return Err(err.into()),
        };
        Ok(serde_json::from_slice(&payload).map_err(FrameError::Malformed)?)
    }
}

/// The socket's file name in the state directory.
pub const SOCKET_NAME: &str = "control.sock";

/// A path by which `dir/name` can be bound or connected to, however deep `dir` is.
///
/// A Unix socket address holds at most 107 bytes of path, and a state directory may be deeper
/// than that. Then the directory is opened and the socket reached through
/// `/proc/self/fd/N/name`, which the kernel resolves like the real path; the returned file
/// must be kept open until the bind or connect is done.
pub fn socket_address(dir: &Path, name: &str) -> io::Result<(PathBuf, Option<std::fs::File>)> {
    /// `sizeof(sun_path)` minus the terminating NUL.
    const MAX: usize = 107;
    let full = dir.join(name);
    if full.as_os_str().len() <= MAX {
        return Ok((full, None));
    }
    let handle = std::fs::File::open(dir)?;
    let short = PathBuf::from(format!(
        "/proc/self/fd/{}/{name}",
        std::os::fd::AsRawFd::as_raw_fd(&handle)
    ));
    Ok((short, Some(handle)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_its_length_then_json() {
        let frame = encode(&Request::Status { service: None }).expect("encode");
        let len = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
        assert_eq!(len, frame.len() - 4);
        assert_eq!(&frame[4..], br#"{"request":"status"}"#);
        let payload = read_frame(&mut &frame[..], MAX_REQUEST).expect("read");
        let back: Request = serde_json::from_slice(&payload).expect("decode");
        assert_eq!(back, Request::Status { service: None });
    }

    #[test]
    fn an_oversized_frame_is_refused_before_its_payload_is_read() {
        let header = u32::try_from(MAX_REQUEST + 1).expect("fits").to_be_bytes();
        let err = read_frame(&mut &header[..], MAX_REQUEST).expect_err("too large");
        assert!(matches!(err, FrameError::TooLarge { len, .. } if len == MAX_REQUEST + 1));
    }

    #[test]
    fn end_of_stream_at_a_boundary_is_closed_and_inside_a_frame_is_an_error() {
        assert!(matches!(
            read_frame(&mut &b""[..], MAX_REQUEST),
            Err(FrameError::Closed)
        ));
        let mut cut = encode(&Request::Down).expect("encode");
        cut.truncate(cut.len() - 1);
        assert!(matches!(
            read_frame(&mut &cut[..], MAX_REQUEST),
            Err(FrameError::Io(_))
        ));
    }

    #[test]
    fn a_socket_in_a_deep_directory_is_reached_through_proc() {
        let base = std::env::temp_dir().join(format!("hw-deep-{}", std::process::id()));
        let deep = base.join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).expect("mkdir");
        let (address, handle) = socket_address(&deep, SOCKET_NAME).expect("address");
        assert!(handle.is_some() && address.starts_with("/proc/self/fd"));
        let listener = std::os::unix::net::UnixListener::bind(&address).expect("bind");
        assert!(deep.join(SOCKET_NAME).exists());
        let (again, _handle) = socket_address(&deep, SOCKET_NAME).expect("address");
        UnixStream::connect(&again).expect("connect");
        drop(listener);
        std::fs::remove_dir_all(&base).expect("clean up");
    }

    #[test]
    fn every_request_round_trips() {
        let requests = [
            Request::Status {
                service: Some("api".into()),
            },
            Request::Start {
                service: "api".into(),
            },
            Request::Stop {
                service: "api".into(),
            },
            Request::Restart {
                service: "api".into(),
            },
            Request::Down,
            Request::Diagnose {
                service: "api".into(),
                sample_ms: Some(100),
            },
            Request::Reload,
        ];
        for request in requests {
            let json = serde_json::to_string(&request).expect("encode");
            let back: Request = serde_json::from_str(&json).expect("decode");
            assert_eq!(back, request, "{json}");
        }
    }

    #[test]
    fn every_reply_with_services_round_trips() {
        let status = ServiceStatus {
            name: "worker.1".into(),
            state: State::Ready,
            pid: Some(42),
            uptime_ms: Some(1000),
            restarts: 0,
            last_exit: None,
            heartbeat: None,
            restart_in_ms: None,
            last_incident: None,
            status_text: None,
            rss_bytes: None,
        };
        let replies = [
            Reply::Service(status.clone()),
            Reply::Services {
                services: vec![status.clone(), status],
            },
        ];
        for reply in replies {
            let frame = encode(&reply).expect("encode");
            let json = String::from_utf8_lossy(&frame[4..]).into_owned();
            let back: Reply = serde_json::from_str(&json).expect("decode");
            assert_eq!(
                serde_json::to_string(&back).ok(),
                serde_json::to_string(&reply).ok()
            );
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_unknown_requests_are_errors() {
        let status: Request =
            serde_json::from_str(r#"{"request":"status","later":1}"#).expect("decode");
        assert_eq!(status, Request::Status { service: None });
        assert!(serde_json::from_str::<Request>(r#"{"request":"format-disk"}"#).is_err());
    }
}
