//! The supervisor's state directory: logs, the event log, the instance record and its lock,
//! written by the supervisor and read back by `hangwatch logs`, `events` and `incidents`. This
//! module owns its layout: the writers and the readers of each file live side by side, so that
//! a change to how a file is named, rotated or written is made once.
//!
//! ```text
//! STATE_DIR/
//!   lock            flock()ed by the running hangwatch; holds its PID for messages
//!   instance.json   who runs the services (PID, start time, token, process groups)
//!   events.jsonl    the event log, one JSON record per line (rotated by size: .1 … .N)
//!   logs/NAME.log   each service's stdout and stderr, timestamped, rotated by size
//!   incidents/      diagnoses written before a stalled service was stopped
//!   control.sock    the control socket
//! ```
//!
//! - Writing: [`dir`] (the lock), [`events`], [`logfile`], [`instance`], [`console`] (the
//!   terminal), [`rotation`] (how the event log and the logs are rotated).
//! - Reading: [`read`] (what the files hold, across their rotations) and [`follow`] (what is
//!   written next, through rotations, as `tail -F` does).
//!
//! The writers are called from the daemon's single-threaded event loop, so nothing blocks
//! longer than a `write(2)` to a regular file: durability (`fsync`) happens on background
//! threads ([`events::EventLog`], [`instance::InstanceFile`]), and the terminal is written by a
//! thread that drops lines rather than wait for a slow reader ([`console::Console`]). The
//! readers run in the client, never in the daemon.

pub mod console;
pub mod dir;
pub mod events;
pub mod follow;
pub mod instance;
pub mod lines;
pub mod logfile;
pub mod read;
pub mod rotation;

use std::time::{Duration, SystemTime};

pub use console::Console;
pub use dir::{StateDir, StateError};
pub use events::{EventLog, record};
pub use instance::{GroupRecord, INSTANCE_ENV, InstanceFile, InstanceRecord};
pub use lines::LineSplitter;
pub use logfile::LogFile;

/// The event log's name in the state directory.
pub const EVENTS_FILE: &str = "events.jsonl";

/// The directory of the services' logs in the state directory.
pub const LOGS_DIR: &str = "logs";

/// The directory of incident files in the state directory.
pub const INCIDENTS_DIR: &str = "incidents";

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

/// An RFC 3339 time with `Z` or a numeric offset (what [`timestamp`] writes, and what users
/// give); `None` for anything else (a time without a zone is refused rather than guessed).
#[must_use]
pub fn parse_time(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (utc, offset) = split_offset(text)?;
    let base = humantime::parse_rfc3339_weak(utc).ok()?;
    if offset >= 0 {
        base.checked_sub(Duration::from_secs(offset.unsigned_abs()))
    } else {
        base.checked_add(Duration::from_secs(offset.unsigned_abs()))
    }
}

/// Splits `2026-11-24T11:00:00+01:00` into the local part and the offset east of UTC in
/// seconds; `Z` (or `z`) is an offset of 0.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    if let Some(rest) = text.strip_suffix(['Z', 'z']) {
        return Some((rest, 0));
    }
    // The offset's sign is past the date's dashes: `±HH:MM` is the last six characters.
    let cut = text.len().checked_sub(6)?;
    let (local, zone) = (text.get(..cut)?, text.get(cut..)?);
    let sign = match zone.as_bytes() {
        [b'+', _, _, b':', _, _] => 1,
        [b'-', _, _, b':', _, _] => -1,
        _ => return None,
    };
    let hours: i64 = zone.get(1..3)?.parse().ok()?;
    let minutes: i64 = zone.get(4..6)?.parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((local, sign * (hours * 3600 + minutes * 60)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_written_parse_back_and_offsets_count() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_514_400_123);
        assert_eq!(parse_time(&timestamp(at)), Some(at));
        assert_eq!(parse_time("2026-11-24T11:00:00.123+01:00"), Some(at));
        assert_eq!(parse_time("2026-11-24T10:00:00.123"), None);
        assert_eq!(parse_time("2026-11-24T10:00:00+1:00"), None);
    }
}
