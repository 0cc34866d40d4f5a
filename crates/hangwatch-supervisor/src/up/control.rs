//! The control socket: `STATE/control.sock`, where `hangwatch status`, `stop`, `down`… reach the
//! supervisor.
//!
//! One accept task, and one small task per connection that reads frames, checks them, and
//! hands each request to the supervisor's loop ([`Msg::Control`]) with a one-shot channel for
//! the reply. The loop owns every service, so a request is served between two events like any
//! other; a request that waits (`stop` until the service is down) only parks its reply.
//!
//! Safety of the daemon comes first: the socket is mode 0600 and every peer's credentials
//! (`SO_PEERCRED`) are checked, so only the supervisor's own user (and root, when allowed) is
//! served; a frame larger than [`MAX_REQUEST`] is refused before it is read; a malformed
//! request is answered with an error; the greeting must arrive within [`HELLO_WITHIN`]; and at
//! most [`MAX_CONNECTIONS`] clients are served at once. Nothing a client sends can stop the
//! loop.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hangwatch_protocol::control::{
    ErrorKind, ErrorReply, FrameError, Hello, MAX_REQUEST, Reply, Request, VERSION, Welcome,
    encode, frame_len,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::Msg;

/// How long a client has to say hello.
const HELLO_WITHIN: Duration = Duration::from_secs(5);

/// Clients served at once; more are answered with an error and closed.
const MAX_CONNECTIONS: usize = 64;

/// Who may talk to the supervisor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Access {
    /// The supervisor's effective user: always allowed.
    pub(crate) uid: u32,
    /// Whether root is allowed too.
    pub(crate) root: bool,
}

impl Access {
    fn allows(self, uid: u32) -> bool {
        uid == self.uid || (self.root && uid == 0)
    }
}

/// A listening control socket; the file is removed when it is dropped.
#[derive(Debug)]
pub(crate) struct ControlSocket {
    path: PathBuf,
    accept: tokio::task::JoinHandle<()>,
}

impl ControlSocket {
    /// Binds `path` (replacing a stale socket: the caller holds the state directory's lock, so
    /// no other supervisor can be listening there), makes it 0600, and serves clients.
    pub(crate) fn bind(
        path: &Path,
        access: Access,
        welcome: Welcome,
        tx: mpsc::Sender<Msg>,
    ) -> io::Result<ControlSocket> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(hangwatch_protocol::control::SOCKET_NAME);
        let (address, _dir) = hangwatch_protocol::control::socket_address(dir, name)?;
        let listener = UnixListener::bind(&address)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let served = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let welcome = Arc::new(welcome);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // EMFILE and the like: give the fds a moment to come back.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let permit = served.clone().try_acquire_owned();
                let welcome = welcome.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut stream = stream;
                    let Ok(_permit) = permit else {
                        let error = ErrorReply::new(
                            ErrorKind::Failed,
                            "too many clients at once; try again",
                        );
                        let _ = write(&mut stream, &Reply::Error(error)).await;
                        return;
                    };
                    if let Err(err) = serve(stream, access, &welcome, tx).await {
                        tracing::debug!(%err, "control client");
                    }
                });
            }
        });
        Ok(ControlSocket {
            path: path.to_path_buf(),
            accept,
        })
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One client, from hello to hang-up.
async fn serve(
    mut stream: UnixStream,
    access: Access,
    welcome: &Welcome,
    tx: mpsc::Sender<Msg>,
) -> Result<(), FrameError> {
    let hello = match tokio::time::timeout(HELLO_WITHIN, read(&mut stream)).await {
        Ok(frame) => frame,
        Err(_) => {
            let error = ErrorReply::new(ErrorKind::BadRequest, "no hello within 5 s");
            return write(&mut stream, &Reply::Error(error)).await;
        }
    };
    // The credentials are checked after the hello is read, so that a refused client reads
    // the refusal instead of a broken pipe on its hello.
    let uid = stream.peer_cred()?.uid();
    if !access.allows(uid) {
        let error = ErrorReply::new(
            ErrorKind::Denied,
            format!(
                "user {uid} may not control this hangwatch (it serves user {})",
                access.uid
            ),
        );
        return write(&mut stream, &Reply::Error(error)).await;
    }
    match hello.map(|payload| serde_json::from_slice::<Hello>(&payload)) {
        Ok(Ok(hello)) if hello.version == VERSION => {
            write(&mut stream, &Reply::Welcome(welcome.clone())).await?;
        }
        Ok(Ok(hello)) => {
            let error = ErrorReply::new(
                ErrorKind::Version,
                format!(
                    "this hangwatch speaks control protocol version {VERSION}, the client {}",
                    hello.version
                ),
            );
            return write(&mut stream, &Reply::Error(error)).await;
        }
        Ok(Err(err)) => {
            let error = ErrorReply::new(ErrorKind::BadRequest, format!("expected a hello: {err}"));
            return write(&mut stream, &Reply::Error(error)).await;
        }
        Err(err) => return refuse(&mut stream, err).await,
    }
    loop {
        let payload = match read(&mut stream).await {
            Ok(payload) => payload,
            Err(err) => return refuse(&mut stream, err).await,
        };
        let request = match serde_json::from_slice::<Request>(&payload) {
            Ok(request) => request,
            Err(err) => {
                let error = ErrorReply::new(ErrorKind::BadRequest, format!("bad request: {err}"));
                write(&mut stream, &Reply::Error(error)).await?;
                continue;
            }
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let (written_tx, written_rx) = oneshot::channel();
        let msg = Msg::Control {
            request,
            reply: reply_tx,
            written: written_rx,
        };
        if tx.send(msg).await.is_err() {
            return Ok(());
        }
        // The loop drops the sender only when it ends without answering.
        let Ok(reply) = reply_rx.await else {
            return Ok(());
        };
        write(&mut stream, &reply).await?;
        let _ = written_tx.send(());
    }
}

/// Answers a frame that could not be read, when there is anyone left to answer.
async fn refuse(stream: &mut UnixStream, err: FrameError) -> Result<(), FrameError> {
    match err {
        FrameError::TooLarge { len, limit } => {
            let error = ErrorReply::new(
                ErrorKind::TooLarge,
                format!("a request of {len} bytes is larger than the limit of {limit}"),
            );
            write(stream, &Reply::Error(error)).await
        }
        FrameError::Closed => Ok(()),
        other => Err(other),
    }
}

async fn read(stream: &mut UnixStream) -> Result<Vec<u8>, FrameError> {
    let mut header = [0; 4];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(err) => return Err(err.into()),
    }
    let len = frame_len(header, MAX_REQUEST)?;
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).await?;
    Ok(payload)
}

async fn write(stream: &mut UnixStream, reply: &Reply) -> Result<(), FrameError> {
    let frame = encode(reply)?;
    stream.write_all(&frame).await?;
    Ok(())
}
