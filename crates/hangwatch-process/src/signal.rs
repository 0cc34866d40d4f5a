//! Signals named by intent, parsed the way users write them.

use std::fmt;
use std::str::FromStr;

pub use nix::sys::signal::Signal as RawSignal;

/// A signal hangwatch sends or forwards.
///
/// A thin wrapper over the platform's signal number that parses `TERM`, `SIGTERM`, `term` and
/// `15` alike and prints the short name (`TERM`) used in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(pub RawSignal);

impl Signal {
    /// `SIGTERM`: the polite default stop signal.
    pub const TERMINATE: Signal = Signal(RawSignal::SIGTERM);
    /// `SIGKILL`: the end of every escalation.
    pub const KILL: Signal = Signal(RawSignal::SIGKILL);
    /// `SIGINT`: what Ctrl-C sends.
    pub const INTERRUPT: Signal = Signal(RawSignal::SIGINT);
    /// `SIGCONT`: resumes a stopped process so that it can act on a pending signal.
    pub const CONTINUE: Signal = Signal(RawSignal::SIGCONT);

    /// The short name without `SIG` (`TERM`).
    #[must_use]
    pub fn name(self) -> &'static str {
        let full = self.0.as_str();
        full.strip_prefix("SIG").unwrap_or(full)
    }

    /// The signal number.
    #[must_use]
    pub fn number(self) -> i32 {
        self.0 as i32
    }

    /// The signal with number `number`, if the platform has one.
    #[must_use]
    pub fn from_number(number: i32) -> Option<Signal> {
        RawSignal::try_from(number).ok().map(Signal)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Sends `signal` to every process of group `pgid` (`kill(-pgid, sig)`).
///
/// Only for a group known to be non-empty (the program's own, while a member lives): the ID of
/// a non-empty group cannot be reused. `ESRCH` (the group is gone) is not an error.
pub fn signal_group(pgid: i32, signal: Signal) -> std::io::Result<()> {
    match nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal.0) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// A signal name or number that names no signal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal `{0}` (expected a name such as TERM, INT, HUP, KILL, or a number)")]
pub struct UnknownSignal(pub String);

impl FromStr for Signal {
    type Err = UnknownSignal;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if let Ok(number) = trimmed.parse::<i32>() {
            return Signal::from_number(number).ok_or_else(|| UnknownSignal(text.to_owned()));
        }
        let upper = trimmed.to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        RawSignal::from_str(&full)
            .map(Signal)
            .map_err(|_| UnknownSignal(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_prefixed_names_and_numbers() {
        for text in ["TERM", "SIGTERM", "term", "15", " Term "] {
            assert_eq!(text.parse::<Signal>(), Ok(Signal::TERMINATE), "{text}");
        }
        assert_eq!("INT".parse::<Signal>(), Ok(Signal::INTERRUPT));
        assert_eq!("9".parse::<Signal>(), Ok(Signal::KILL));
    }

    #[test]
    fn rejects_what_is_not_a_signal() {
        assert!("TERMINATE".parse::<Signal>().is_err());
        assert!("0".parse::<Signal>().is_err());
        assert!("99".parse::<Signal>().is_err());
        assert!("".parse::<Signal>().is_err());
    }

    #[test]
    fn prints_the_short_name() {
        assert_eq!(Signal::TERMINATE.to_string(), "TERM");
        assert_eq!(Signal::KILL.name(), "KILL");
        assert_eq!(Signal::KILL.number(), 9);
    }
}
