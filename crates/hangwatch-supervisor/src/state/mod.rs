//! The supervisor's state directory: logs, the event log, the instance record and its lock.
//!
//! ```text
//! STATE_DIR/
//!   lock            flock()ed by the running hangwatch; holds its PID for messages
//!   instance.json   who runs the services (PID, start time, token, process groups)
//!   events.jsonl    the event log, one JSON record per line (rotated by size: .1 … .N)
//!   logs/NAME.log   each service's stdout and stderr, timestamped, rotated by size
//!   incidents/      diagnoses written before a stalled service was stopped
//!   control.sock    (later) the control socket
//! ```
//!
//! Everything here is called from the daemon's single-threaded event loop, so nothing blocks
//! longer than a `write(2)` to a regular file: durability (`fsync`) happens on background
//! threads ([`events::EventLog`], [`instance::InstanceFile`]), and the terminal is written by a
//! thread that drops lines rather than wait for a slow reader ([`console::Console`]).

pub mod console;
pub mod dir;
pub mod events;
pub mod instance;
pub mod lines;
pub mod logfile;

use std::time::SystemTime;

pub use console::Console;
pub use dir::{StateDir, StateError};
pub use events::{EventLog, record};
pub use instance::{GroupRecord, INSTANCE_ENV, InstanceFile, InstanceRecord};
pub use lines::LineSplitter;
pub use logfile::LogFile;

/// Which of a service's output streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output (and everything, when the service writes to a pseudo-terminal).
    Out,
    /// Standard error.
    Err,
}

impl Stream {
    /// `out` or `err`, as log files name the stream.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
        }
    }
}

/// `at` as RFC 3339 in UTC with milliseconds (`2026-11-24T10:00:00.123Z`), the one time format
/// of the state directory.
#[must_use]
pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}
