//! What every command that talks to a running supervisor shares: connecting to its control
//! socket, sending one request, and turning failures into messages and exit codes (see
//! [`crate::commands::control`] for the codes).

use std::io;
use std::time::Duration;

use hangwatch_protocol::control::{Client, ClientError, ErrorKind, ErrorReply, Reply, Request};
use hangwatch_protocol::exit_code;

use crate::commands::out;
use crate::commands::target::Target;

/// A request failed (see the module docs).
pub const FAILED: i32 = 1;

/// How long connecting and the handshake may take: the supervisor answers a hello from its
/// event loop at once, so anything slower means it is stuck.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The client's name in the supervisor's log.
fn who() -> String {
    format!("hangwatch {}", env!("CARGO_PKG_VERSION"))
}

/// Connects to the supervisor of `target`, or prints why not and returns the exit code.
pub fn connect(target: &Target) -> Result<Client, i32> {
    Client::connect(&target.state_dir, &who(), CONNECT_TIMEOUT)
        .map_err(|err| client_error(&err, target))
}

/// Sends `request` and returns the reply; an error reply or a failure is printed (as JSON on
/// stdout too, with `json`) and returned as the exit code.
pub fn call(
    client: &mut Client,
    target: &Target,
    request: &Request,
    json: bool,
) -> Result<Reply, i32> {
    match client.call(request) {
        Ok(Reply::Error(error)) => Err(error_reply(&error, json)),
        Ok(reply) => Ok(reply),
        Err(err) => Err(client_error(&err, target)),
    }
}

/// Prints a failure to reach or talk to the supervisor; returns [`FAILED`].
pub fn client_error(err: &ClientError, target: &Target) -> i32 {
    match err {
        ClientError::NotRunning { .. } => {
            eprintln!(
                "hangwatch: no hangwatch is running for {}",
                target.state_dir.display()
            );
        }
        ClientError::Refused(reply) if reply.kind == ErrorKind::Version => {
            eprintln!(
                "hangwatch: the running supervisor speaks another protocol version ({}); use the \
                 hangwatch binary that started it",
                reply.message
            );
        }
        ClientError::Frame(hangwatch_protocol::control::FrameError::Io(io))
            if io.kind() == io::ErrorKind::WouldBlock || io.kind() == io::ErrorKind::TimedOut =>
        {
            eprintln!(
                "hangwatch: the supervisor of {} did not answer within {}s",
                target.state_dir.display(),
                CONNECT_TIMEOUT.as_secs()
            );
        }
        other => eprintln!("hangwatch: {other}"),
    }
    FAILED
}

/// Prints an error reply: its message on stderr (a config's diagnostics first, one a line), and
/// with `json` the reply on stdout. 125 for a rejected config, as `check` exits for one; 1
/// otherwise.
pub fn error_reply(error: &ErrorReply, json: bool) -> i32 {
    if json {
        let _ = out::print(&to_json(&Reply::Error(error.clone())));
    }
    for diagnostic in &error.diagnostics {
        eprintln!("{diagnostic}");
    }
    eprintln!("hangwatch: {}", error.message);
    match error.kind {
        ErrorKind::Config => exit_code::HANGWATCH_FAILED,
        _ => FAILED,
    }
}

/// A reply as pretty JSON with a final newline (the `reply` tag included, so that a script
/// tells an answer from an error by one field).
pub fn to_json(reply: &Reply) -> String {
    // Serialising plain data types with string keys cannot fail.
    serde_json::to_string_pretty(reply).unwrap_or_default() + "\n"
}

/// A reply of the wrong kind: the supervisor and this client disagree about the protocol.
pub fn unexpected(reply: &Reply) -> i32 {
    eprintln!("hangwatch: unexpected reply from the supervisor: {reply:?}");
    exit_code::HANGWATCH_FAILED
}
