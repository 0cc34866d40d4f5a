//! Arming the guardian ([`hangwatch_process::guardian`]) for `run` and `up`: the token each
//! gives its programs, and what happens when the guardian cannot be had.
//!
//! The guardian is an optional part: if it cannot be started (no pidfd support, no process
//! left under the user's limit), the run goes on with a note, as before it existed; the
//! programs still die with hangwatch (`PR_SET_PDEATHSIG`) and `up`'s next start still kills the
//! survivors of this instance.

use std::ffi::OsString;

use hangwatch_process::{Guardian, GuardianStart};
use hangwatch_protocol::report::Degraded;

/// The environment variable that marks every process of one `hangwatch run`, descendants
/// included (`up` uses [`crate::state::instance::INSTANCE_ENV`]).
pub const RUN_ENV: &str = "HANGWATCH_RUN";

/// Set to `0` to run without a guardian: for measuring what it costs, or where something else
/// already kills what hangwatch leaves (a PID namespace, a cgroup that is killed as a whole).
pub const GUARDIAN_ENV: &str = "HANGWATCH_GUARDIAN";

/// A guardian for this process being started, or a note saying why there is none. Settle it
/// with [`settle`] before becoming a subreaper.
pub(crate) fn arm(name: &str, value: &str, notes: &mut Vec<Degraded>) -> Option<GuardianStart> {
    if std::env::var_os(GUARDIAN_ENV).is_some_and(|v| v == "0") {
        tracing::debug!("{GUARDIAN_ENV}=0: no guardian");
        return None;
    }
    match Guardian::start(format!("{name}={value}").as_bytes()) {
        Ok(start) => start,
        Err(err) => {
            no_guardian(&err, notes);
            None
        }
    }
}

/// The guardian [`arm`] started, once running, or a note saying why there is none.
pub(crate) fn settle(start: Option<GuardianStart>, notes: &mut Vec<Degraded>) -> Option<Guardian> {
    match start?.settle() {
        Ok(guardian) => Some(guardian),
        Err(err) => {
            no_guardian(&err, notes);
            None
        }
    }
}

fn no_guardian(err: &std::io::Error, notes: &mut Vec<Degraded>) {
    tracing::warn!(%err, "no guardian");
    notes.push(Degraded::new(
        "guardian",
        format!(
            "cannot start the guardian ({err}): if hangwatch is killed, descendants of its \
             programs may outlive it"
        ),
    ));
}

/// A token for one `hangwatch run`: this process's PID and start time and some clock bits, so
/// that it names this run alone (a reused PID has another start time).
pub(crate) fn run_token() -> String {
    let pid = std::process::id();
    let start = hangwatch_process::stat::read_stat(pid as i32)
        .ok()
        .flatten()
        .map_or(0, |stat| stat.start_time);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{pid}.{start}.{nanos:x}")
}

/// The `(name, value)` to add to a program's environment.
pub(crate) fn env_entry(name: &str, value: &str) -> (OsString, OsString) {
    (name.into(), value.into())
}
