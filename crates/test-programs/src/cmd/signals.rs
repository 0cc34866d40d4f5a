//! `signals OUTFILE [--exit-on NAME]`: records every INT, TERM, HUP, QUIT,
//! USR1, USR2 and WINCH it receives as a line (`USR1`) appended to OUTFILE.
//! With `--exit-on NAME` it exits 0 right after recording that signal (and
//! any others pending with it);
//! otherwise only an uncatchable signal ends it.
//!
//! The handler only counts, in one atomic per signal; the main loop writes
//! the file. The watched signals stay blocked except inside `sigsuspend(2)`,
//! so a signal that arrives between draining the counters and suspending is
//! not lost: it is delivered the moment the mask is lifted. Several signals
//! pending at once are recorded in the order of [`WATCHED`], not of arrival.
//! OUTFILE is appended to, never truncated, so it keeps the record across
//! restarts of a supervised service.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use libc::c_int;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};

use crate::args::Args;
use crate::common::{self, Error};
use crate::sys;

/// The signals recorded, with the names written for them.
const WATCHED: [(Signal, &str); 7] = [
    (Signal::SIGINT, "INT"),
    (Signal::SIGTERM, "TERM"),
    (Signal::SIGHUP, "HUP"),
    (Signal::SIGQUIT, "QUIT"),
    (Signal::SIGUSR1, "USR1"),
    (Signal::SIGUSR2, "USR2"),
    (Signal::SIGWINCH, "WINCH"),
];

/// How many of each watched signal arrived and are not yet recorded, in the
/// order of [`WATCHED`].
static RECEIVED: [AtomicU32; WATCHED.len()] = [const { AtomicU32::new(0) }; WATCHED.len()];

extern "C" fn count_signal(signo: c_int) {
    // Only atomics are touched here: async-signal-safe.
    for (index, (signal, _)) in WATCHED.iter().enumerate() {
        if *signal as c_int == signo {
            RECEIVED[index].fetch_add(1, Ordering::SeqCst);
        }
    }
}

pub(crate) fn run(mut args: Args) -> Result<(), Error> {
    let out_file = args.path("OUTFILE")?;
    let exit_on = args
        .option("--exit-on")?
        .map(|name| {
            watched_index(&name).ok_or_else(|| {
                Error::Usage(format!(
                    "--exit-on needs a recorded signal name, not {name:?}"
                ))
            })
        })
        .transpose()?;
    args.finish()?;

    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_file)
        .map_err(|e| Error::io_path("open", &out_file, e))?;

    let mut watched = SigSet::empty();
    for (signal, _) in WATCHED {
        watched.add(signal);
    }
    let mut previous = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&watched), Some(&mut previous))
        .map_err(|errno| Error::io("block signals", errno))?;
    for (signal, _) in WATCHED {
        sys::install_handler(signal, count_signal)?;
    }
    // The mask inside sigsuspend: whatever was inherited, less the watched
    // signals, which a parent may have left blocked.
    let mut waiting = previous;
    for (signal, _) in WATCHED {
        waiting.remove(signal);
    }

    common::announce_ready();
    loop {
        let mut exit_now = false;
        for (index, (_, name)) in WATCHED.iter().enumerate() {
            let count = RECEIVED[index].swap(0, Ordering::SeqCst);
            for _ in 0..count {
                record(&mut file, &out_file, name)?;
            }
            exit_now |= count > 0 && exit_on == Some(index);
        }
        if exit_now {
            return Ok(());
        }
        waiting
            .suspend()
            .map_err(|errno| Error::io("wait for signals", errno))?;
    }
}

/// The index in [`WATCHED`] of `name`, given as `TERM`, `SIGTERM` or
/// `sigterm`.
fn watched_index(name: &str) -> Option<usize> {
    let upper = name.to_ascii_uppercase();
    let short = upper.strip_prefix("SIG").unwrap_or(&upper);
    WATCHED.iter().position(|(_, known)| *known == short)
}

/// Appends `name` and a newline with one `write(2)`.
fn record(file: &mut File, path: &Path, name: &str) -> Result<(), Error> {
    let line = format!("{name}\n");
    match file.write(line.as_bytes()) {
        Ok(written) if written == line.len() => Ok(()),
        Ok(_) => Err(Error::io_path(
            "append to",
            path,
            io::Error::new(io::ErrorKind::WriteZero, "short write"),
        )),
        Err(e) => Err(Error::io_path("append to", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_accepted_with_or_without_sig() {
        assert_eq!(watched_index("TERM"), Some(1));
        assert_eq!(watched_index("SIGTERM"), Some(1));
        assert_eq!(watched_index("usr1"), Some(4));
        assert_eq!(watched_index("KILL"), None);
        assert_eq!(watched_index("SIG"), None);
    }
}
