//! One service as the supervisor keeps it: its definition, its [`Life`], and what outlives a
//! single run of its program (restart counts, its log, what `hangwatch status` shows of its
//! past).

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hangwatch_process::{ExitStatus, RunAs, Signal, StopPlan};
use hangwatch_protocol::control::LastExit;
use hangwatch_protocol::report::NotifySummary;

use super::policy::{Ending, Restarts};
use super::state::Life;
use crate::state::{LineSplitter, LogFile};

/// One service and everything hangwatch keeps about it.
pub(crate) struct Svc {
    /// Its definition.
    pub(crate) cfg: hangwatch_config::Service,
    /// The indices of its dependencies.
    pub(crate) deps: Vec<usize>,
    /// How its tree is stopped.
    pub(crate) plan: StopPlan,
    /// Where it is in its life.
    pub(crate) life: Life,
    /// One more per start; messages of an older program are told by it.
    pub(crate) generation: u32,
    /// Restart bookkeeping.
    pub(crate) restarts: Restarts,
    /// The current program's notify messages (`STATUS=`, `MAINPID=`, …), new at each start.
    pub(crate) notified: NotifySummary,
    /// The last readiness or liveness probe error.
    pub(crate) last_probe_error: Option<String>,
    /// Its output's log file (none when the state directory is not writable).
    pub(crate) log: Option<LogFile>,
    /// Its stdout and stderr cut into lines.
    pub(crate) split: [LineSplitter; 2],
    /// How its last program ended, as the restart policy saw it.
    pub(crate) last_ending: Option<Ending>,
    /// Whether the shutdown had to kill something of it.
    pub(crate) killed_at_shutdown: Option<bool>,
    /// How its last program ended, for `hangwatch status`.
    pub(crate) last_exit: Option<LastExit>,
    /// Its latest incident file.
    pub(crate) last_incident: Option<PathBuf>,
    /// The last lines of its output, for incidents.
    pub(crate) tail: crate::liveness::tail::OutputTail,
    /// How long its program's stall waited out host pressure, for the stall's incident; reset
    /// at each start.
    pub(crate) stall_deferred: Option<crate::incident::Deferred>,
}

impl Svc {
    /// A service as the config declares it, not started. `names` maps every service's name
    /// to its index.
    pub(crate) fn new(
        cfg: hangwatch_config::Service,
        logs_dir: &Path,
        names: &HashMap<&str, usize>,
    ) -> Svc {
        let log = open_log(logs_dir, &cfg);
        Svc {
            deps: cfg
                .depends_on
                .iter()
                .filter_map(|d| names.get(d.as_str()).copied())
                .collect(),
            plan: stop_plan(&cfg),
            life: Life::Waiting,
            generation: 0,
            restarts: Restarts::default(),
            notified: NotifySummary::default(),
            last_probe_error: None,
            log,
            split: [LineSplitter::new(), LineSplitter::new()],
            last_ending: None,
            killed_at_shutdown: None,
            last_exit: None,
            last_incident: None,
            tail: crate::liveness::tail::OutputTail::default(),
            stall_deferred: None,
            cfg,
        }
    }

    /// Gives it a new definition (it does not run): a reload.
    pub(crate) fn redefine(&mut self, cfg: hangwatch_config::Service, logs_dir: &Path) {
        self.log = open_log(logs_dir, &cfg);
        self.plan = stop_plan(&cfg);
        self.restarts = Restarts::default();
        self.split = [LineSplitter::new(), LineSplitter::new()];
        self.cfg = cfg;
    }

    /// The last `STATUS=` its program sent.
    pub(crate) fn status_text(&self) -> Option<&str> {
        self.notified.status.as_deref()
    }
}

/// A service's log file; without one (an unwritable state directory) its output is only
/// shown, and a warning says so.
fn open_log(logs_dir: &Path, cfg: &hangwatch_config::Service) -> Option<LogFile> {
    LogFile::open(logs_dir, &cfg.name, cfg.log_max_size, cfg.log_keep)
        .inspect_err(|err| tracing::warn!(%err, service = %cfg.name, "no log file"))
        .ok()
}

/// How a service's tree is stopped.
pub(crate) fn stop_plan(cfg: &hangwatch_config::Service) -> StopPlan {
    StopPlan {
        signal: cfg
            .stop_signal
            .parse::<Signal>()
            .unwrap_or(Signal::TERMINATE),
        grace: cfg.stop_grace,
    }
}

/// A program's end, for `hangwatch status`.
pub(crate) fn last_exit(status: ExitStatus, reason: &str) -> LastExit {
    LastExit {
        status: describe_status(status),
        code: match status {
            ExitStatus::Exited(code) => Some(code),
            ExitStatus::Signalled { .. } => None,
        },
        reason: reason.to_owned(),
        at_unix_ms: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, millis),
    }
}

/// `code N`, or the signal's name.
pub(crate) fn describe_status(status: ExitStatus) -> String {
    match status {
        ExitStatus::Exited(code) => format!("code {code}"),
        ExitStatus::Signalled { signal, .. } => Signal::from_number(signal)
            .map_or_else(|| format!("signal {signal}"), |s| s.name().to_owned()),
    }
}

/// The identity to switch to for a service's `user`, looked up now, so that a user created
/// after hangwatch started is found at the next start. `None` without `user`, or when `user`
/// is hangwatch's own user and hangwatch is not root (nothing to switch). Only root may run a
/// program as anyone else.
pub(crate) fn run_as(user: Option<&str>) -> Result<Option<RunAs>, String> {
    let Some(user) = user else {
        return Ok(None);
    };
    let found = RunAs::lookup(user).map_err(|err| err.to_string())?;
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        Ok(Some(found))
    } else if found.uid == euid.as_raw() {
        Ok(None)
    } else {
        Err(format!(
            "cannot run as user `{user}`: hangwatch runs as uid {euid}, and only root can start \
             a program as another user"
        ))
    }
}

/// The variables a service's config adds to the environment (its program's and its `exec`
/// probes').
pub(crate) fn service_env(cfg: &hangwatch_config::Service) -> Vec<(OsString, OsString)> {
    cfg.env
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

/// Milliseconds as a float, for event fields.
pub(crate) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Whole milliseconds, saturating.
pub(crate) fn millis(duration: Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}
