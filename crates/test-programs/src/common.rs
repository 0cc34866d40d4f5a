//! What several subcommands share: the error type, the readiness line, PID
//! files and bounded waits.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the bounded polls look again.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Why a subcommand failed.
#[derive(Debug)]
pub(crate) enum Error {
    /// The arguments are wrong: print the usage and exit 2.
    Usage(String),
    /// An operating-system call failed.
    Io {
        about: &'static str,
        path: Option<PathBuf>,
        source: io::Error,
    },
    /// A bounded wait ran out.
    Timeout {
        about: &'static str,
        path: PathBuf,
        after: Duration,
    },
}

impl Error {
    pub(crate) fn io(about: &'static str, source: impl Into<io::Error>) -> Self {
        Self::Io {
            about,
            path: None,
            source: source.into(),
        }
    }

    pub(crate) fn io_path(about: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            about,
            path: Some(path.to_owned()),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(message) => f.write_str(message),
            Self::Io {
                about,
                path: None,
                source,
            } => write!(f, "{about}: {source}"),
            Self::Io {
                about,
                path: Some(path),
                source,
            } => write!(f, "{about} {}: {source}", path.display()),
            Self::Timeout { about, path, after } => {
                write!(f, "{about} {} within {after:?}", path.display())
            }
        }
    }
}

/// Prints `ready <pid>` and flushes it.
///
/// A write error is ignored on purpose: a fixture whose stdout was closed is
/// still useful to a test that does not wait for readiness, and a test that
/// does will notice the missing line by its own deadline.
pub(crate) fn announce_ready() {
    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "ready {}", std::process::id());
    let _ = stdout.flush();
}

/// The start time of this process, field 22 of `/proc/self/stat`, in clock
/// ticks since boot. With the PID it names the process unambiguously.
///
/// See proc_pid_stat(5). The second field, the command name, may contain
/// spaces and parentheses, so the fields are counted after the last `)`.
pub(crate) fn own_start_time() -> Result<u64, Error> {
    let path = Path::new("/proc/self/stat");
    let stat = fs::read_to_string(path).map_err(|e| Error::io_path("read", path, e))?;
    parse_start_time(&stat).ok_or_else(|| {
        Error::io_path(
            "parse",
            path,
            io::Error::new(io::ErrorKind::InvalidData, "no start time field"),
        )
    })
}

fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    // After the command name come fields 3 (state) onwards, so field 22 is
    // the twentieth of them.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// This process's identity line, `<pid> <starttime>`.
pub(crate) fn identity() -> Result<String, Error> {
    Ok(format!("{} {}", std::process::id(), own_start_time()?))
}

/// Writes `<pid> <starttime>` of this process to `path` atomically: to
/// `path.tmp` first, then renamed over `path`.
pub(crate) fn write_pid_file(path: &Path) -> Result<(), Error> {
    let identity = identity()?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp).map_err(|e| Error::io_path("create", &tmp, e))?;
    file.write_all(identity.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io_path("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io_path("rename to", path, e))
}

/// Removes a PID file left by an earlier run, which would otherwise end
/// [`wait_for_file`] at once.
pub(crate) fn remove_stale(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::io_path("remove stale", path, e))
        }
        _ => Ok(()),
    }
}

/// Waits, polling, until `path` exists, for `limit` at most.
pub(crate) fn wait_for_file(path: &Path, limit: Duration) -> Result<(), Error> {
    poll_until(limit, "see", path, || {
        Ok(path.try_exists().unwrap_or(false))
    })
}

/// Calls `done` every [`POLL_INTERVAL`] until it returns `true`, for `limit`
/// at most; `about` and `path` name what is awaited in the timeout error.
pub(crate) fn poll_until(
    limit: Duration,
    about: &'static str,
    path: &Path,
    mut done: impl FnMut() -> Result<bool, Error>,
) -> Result<(), Error> {
    let start = Instant::now();
    loop {
        if done()? {
            return Ok(());
        }
        if start.elapsed() >= limit {
            return Err(Error::Timeout {
                about,
                path: path.to_owned(),
                after: limit,
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Sleeps until `total` has elapsed since the call, whatever interrupts the
/// individual sleeps (`nanosleep(2)` cut short by a signal handler, say).
pub(crate) fn sleep_for(total: Duration) {
    let start = Instant::now();
    loop {
        let elapsed = start.elapsed();
        let Some(remaining) = total.checked_sub(elapsed).filter(|r| !r.is_zero()) else {
            return;
        };
        std::thread::sleep(remaining);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22() {
        let stat = "1234 (a b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    98765 1000 200 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(98765));
    }

    #[test]
    fn own_start_time_is_readable() {
        assert!(own_start_time().is_ok());
    }

    #[test]
    fn truncated_stat_has_no_start_time() {
        assert_eq!(parse_start_time("1 (x) S 0 1"), None);
    }
}
