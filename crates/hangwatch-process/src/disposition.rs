//! What a process does with a signal: ignores it, catches it with a handler, blocks it in every
//! thread, or leaves it to the default action. Read from the masks of `/proc/PID/status`
//! (`SigIgn`, `SigCgt`, process-wide) and `/proc/PID/task/TID/status` (`SigBlk`, per thread), so
//! that a stop that needed `KILL` can say why the polite signal did not end the process.

use std::io;

use crate::signal::Signal;

/// The signal masks of a process. Bit `n - 1` stands for signal `n`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dispositions {
    /// Signals set to `SIG_IGN`.
    pub ignored: u64,
    /// Signals with a handler.
    pub caught: u64,
    /// Signals blocked in every thread (a signal blocked in only some threads is delivered to
    /// another).
    pub blocked: u64,
    /// Signals pending for the process or one of its threads.
    pub pending: u64,
}

/// What a process does with one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Set to `SIG_IGN`: the signal is thrown away.
    Ignored,
    /// Blocked by every thread: it waits, pending, until a thread unblocks it.
    Blocked,
    /// A handler runs; whether the program then ends is up to it.
    Caught,
    /// The default action.
    Default,
}

impl Handling {
    /// `ignored`, `blocked`, `caught`, `default`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Handling::Ignored => "ignored",
            Handling::Blocked => "blocked",
            Handling::Caught => "caught",
            Handling::Default => "default",
        }
    }
}

impl Dispositions {
    /// What the process does with `signal`. Ignoring wins over blocking (an ignored signal is
    /// discarded), blocking over a handler (the handler never runs while it is blocked).
    #[must_use]
    pub fn handling(&self, signal: Signal) -> Handling {
        let Some(bit) = u32::try_from(signal.number() - 1)
            .ok()
            .filter(|bit| *bit < 64)
            .map(|bit| 1u64 << bit)
        else {
            return Handling::Default;
        };
        if self.ignored & bit != 0 {
            Handling::Ignored
        } else if self.blocked & bit != 0 {
            Handling::Blocked
        } else if self.caught & bit != 0 {
            Handling::Caught
        } else {
            Handling::Default
        }
    }
}

/// One hexadecimal mask field (`SigIgn:\t0000000000001000`) of a `status` file.
fn mask(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| u64::from_str_radix(value.trim(), 16).ok())
}

/// The process-wide masks of a `/proc/PID/status` text: ignored, caught, and the pending ones
/// (`ShdPnd` for the process, `SigPnd` for its thread); `blocked` is the status's own
/// thread's `SigBlk`.
#[must_use]
pub fn parse_status(status: &str) -> Option<Dispositions> {
    Some(Dispositions {
        ignored: mask(status, "SigIgn")?,
        caught: mask(status, "SigCgt")?,
        blocked: mask(status, "SigBlk")?,
        pending: mask(status, "ShdPnd").unwrap_or(0) | mask(status, "SigPnd").unwrap_or(0),
    })
}

/// Reads the dispositions of `pid`; `None` when it is gone. `blocked` holds the signals that
/// every thread blocks.
pub fn read(pid: i32) -> io::Result<Option<Dispositions>> {
    let status = match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let Some(mut found) = parse_status(&status) else {
        return Ok(None);
    };
    // The process's status shows its main thread's mask; the others may differ.
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.filter_map(Result::ok) {
            let path = task.path().join("status");
            if let Ok(text) = std::fs::read_to_string(path)
                && let Some(thread) = parse_status(&text)
            {
                found.blocked &= thread.blocked;
                found.pending |= thread.pending;
            }
        }
    }
    Ok(Some(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tpython3\nShdPnd:\t0000000000000000\nSigPnd:\t0000000000000000\n\
        SigBlk:\t0000000000000000\nSigIgn:\t0000000001005000\nSigCgt:\t0000000180000002\n";

    #[test]
    fn reads_python_masks_captured_from_proc() {
        let d = parse_status(STATUS).expect("parsed");
        // Python catches INT (2); this one ignores TERM (15) and PIPE (13).
        assert_eq!(d.handling(Signal::INTERRUPT), Handling::Caught);
        assert_eq!(d.handling(Signal::TERMINATE), Handling::Ignored);
        assert_eq!(
            d.handling(Signal(crate::signal::RawSignal::SIGHUP)),
            Handling::Default
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn blocking_beats_a_handler_and_ignoring_beats_both() {
        let term = 1u64 << 14;
        let both = Dispositions {
            caught: term,
            blocked: term,
            ..Dispositions::default()
        };
        assert_eq!(both.handling(Signal::TERMINATE), Handling::Blocked);
        let all = Dispositions {
            ignored: term,
            ..both
        };
        assert_eq!(all.handling(Signal::TERMINATE), Handling::Ignored);
    }

    #[test]
    fn reads_its_own_process() {
        let own = read(std::process::id() as i32)
            .expect("readable")
            .expect("alive");
        // The test harness leaves TERM to its default action.
        assert_eq!(own.handling(Signal::KILL), Handling::Default);
    }
}
