//! `[[alert]]` hooks: a command run when a service stalls, gives up, leaks, goes down or
//! restarts too often, with the event as JSON on its stdin and its main fields in its
//! environment (`HANGWATCH_ALERT`, `HANGWATCH_EVENT`, `HANGWATCH_SERVICE`, `HANGWATCH_AT`,
//! `HANGWATCH_SUMMARY`).
//!
//! # Theory of operation
//!
//! The loop offers every event it emits ([`Alerts::offer`]); a matching hook is spawned at once
//! from the loop's thread (a fork and exec, like a service) into a process group of its own,
//! and a small task writes the event to its stdin and waits for its end, which the loop's reaper
//! hands over ([`Alerts::reaped`]: hangwatch reaps every child in one place). Nothing waits on a
//! hook in the loop.
//!
//! A hook cannot hurt the host: it runs at most `timeout`, then its whole process group is
//! killed; at most [`MAX_RUNNING`] hooks run at once and each runs at most `rate.count` times per
//! `rate.within`, so a crash loop cannot fork-bomb the machine. A hook that fails, times out,
//! cannot start or is dropped by a limit becomes an [`Event::AlertFailed`] (reported through the
//! loop's channel; drops at most once per rate window, with their count), and that event never
//! runs a hook.
//!
//! # Caveats
//!
//! A hook's descendant that left the group (`setsid`) is not killed at the timeout; it dies with
//! hangwatch. Its output goes to `STATE_DIR/logs/alerts.log`, not rotated.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hangwatch_config::{Alert, AlertOn};
use hangwatch_process::{ExitStatus, ProgramCommand, Signal, SpawnOptions, spawn};
use hangwatch_protocol::event::{Event, EventRecord};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::up::Msg;

/// Hooks running at once, all alerts together.
pub(crate) const MAX_RUNNING: usize = 4;

/// After the kill at the timeout, how long to wait for the reaper's word.
const AFTER_KILL: Duration = Duration::from_secs(2);

/// Every hook of the config and what limits them.
pub(crate) struct Alerts {
    hooks: Vec<Hook>,
    running: Arc<AtomicUsize>,
    /// Hooks not reaped yet, by PID: the reaper's status goes to their task.
    waiting: HashMap<i32, oneshot::Sender<ExitStatus>>,
    tx: mpsc::Sender<Msg>,
    log: PathBuf,
}

struct Hook {
    cfg: Alert,
    /// Start times within the rate window.
    runs: VecDeque<Instant>,
    /// Restarts within the `restarts` window, by service.
    restarts: HashMap<String, VecDeque<Instant>>,
    /// Runs dropped and not reported yet.
    dropped: u32,
    /// When drops were last reported.
    told: Option<Instant>,
}

impl Alerts {
    pub(crate) fn new(alerts: &[Alert], tx: mpsc::Sender<Msg>, logs_dir: PathBuf) -> Alerts {
        Alerts {
            hooks: alerts
                .iter()
                .map(|cfg| Hook {
                    cfg: cfg.clone(),
                    runs: VecDeque::new(),
                    restarts: HashMap::new(),
                    dropped: 0,
                    told: None,
                })
                .collect(),
            running: Arc::new(AtomicUsize::new(0)),
            waiting: HashMap::new(),
            tx,
            log: logs_dir.join("alerts.log"),
        }
    }

    /// Runs every hook that `record` concerns.
    pub(crate) fn offer(&mut self, record: &EventRecord) {
        let Some(service) = record.service.as_deref() else {
            return;
        };
        let Some(kind) = kind_of(&record.event) else {
            return;
        };
        let now = Instant::now();
        for h in 0..self.hooks.len() {
            let hook = &mut self.hooks[h];
            if !hook.cfg.on.contains(&kind)
                || !(hook.cfg.services.is_empty() || hook.cfg.services.iter().any(|s| s == service))
            {
                continue;
            }
            if kind == AlertOn::Restarting && !hook.restarts_beyond(service, now) {
                continue;
            }
            let within = hook.cfg.rate.within;
            while hook
                .runs
                .front()
                .is_some_and(|t| now.duration_since(*t) >= within)
            {
                hook.runs.pop_front();
            }
            let busy = self.running.load(Ordering::Relaxed) >= MAX_RUNNING;
            if busy || hook.runs.len() >= hook.cfg.rate.count as usize {
                hook.dropped += 1;
                if hook.told.is_none_or(|t| now.duration_since(t) >= within) {
                    hook.told = Some(now);
                    let detail = if busy {
                        format!("{MAX_RUNNING} hooks already running")
                    } else {
                        format!(
                            "more than {} runs within {} ms",
                            hook.cfg.rate.count,
                            within.as_millis()
                        )
                    };
                    let detail = format!("{} run(s) dropped: {detail}", hook.dropped);
                    hook.dropped = 0;
                    let event = failed(&hook.cfg.name, kind, "dropped", detail);
                    let _ = self.tx.try_send(Msg::Alert {
                        service: Some(service.to_owned()),
                        event,
                    });
                }
                continue;
            }
            hook.runs.push_back(now);
            self.run(h, kind, record);
        }
    }

    /// Takes the status of a reaped hook; `false` when `pid` is not one.
    pub(crate) fn reaped(&mut self, pid: i32, status: ExitStatus) -> bool {
        match self.waiting.remove(&pid) {
            Some(tell) => {
                let _ = tell.send(status);
                true
            }
            None => false,
        }
    }

    fn run(&mut self, h: usize, kind: AlertOn, record: &EventRecord) {
        let cfg = &self.hooks[h].cfg;
        let name = cfg.name.clone();
        let service = record.service.clone();
        let report = |why: &str, detail: String| Msg::Alert {
            service: service.clone(),
            event: failed(&name, kind, why, detail),
        };
        let json = match serde_json::to_vec(record) {
            Ok(mut json) => {
                json.push(b'\n');
                json
            }
            Err(err) => {
                let _ = self.tx.try_send(report("not-started", err.to_string()));
                return;
            }
        };
        let (read, write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
            Ok(ends) => ends,
            Err(err) => {
                let _ = self
                    .tx
                    .try_send(report("not-started", format!("pipe: {err}")));
                return;
            }
        };
        let argv: Vec<OsString> = cfg.command.argv.iter().map(OsString::from).collect();
        let Some(mut program) = ProgramCommand::from_argv(&argv) else {
            return;
        };
        program.cwd = Some(cfg.cwd.clone());
        program.stdin = Some(read);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map(OwnedFd::from);
        if let Ok(log) = log
            && let Ok(copy) = log.try_clone()
        {
            program.stdout = Some(log);
            program.stderr = Some(copy);
        }
        let summary = crate::up::describe(record).unwrap_or_default();
        program.env = [
            ("HANGWATCH_ALERT", name.as_str()),
            ("HANGWATCH_EVENT", kind.as_str()),
            ("HANGWATCH_SERVICE", service.as_deref().unwrap_or("")),
            ("HANGWATCH_AT", record.at.as_str()),
            ("HANGWATCH_SUMMARY", summary.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
        let spawned = match spawn(
            program,
            SpawnOptions {
                foreground_tty: false,
                die_with_parent: true,
            },
        ) {
            Ok(spawned) => spawned,
            Err(err) => {
                let _ = self.tx.try_send(report("not-started", err.to_string()));
                return;
            }
        };
        // Registered before the loop can reap it: both happen on this thread.
        let (tell, mut ended) = oneshot::channel();
        self.waiting.insert(spawned.id.pid, tell);
        self.running.fetch_add(1, Ordering::Relaxed);
        let running = self.running.clone();
        let tx = self.tx.clone();
        let timeout = cfg.timeout;
        let pgid = spawned.pgid;
        tokio::spawn(async move {
            let feed = async {
                // A hook that does not read its stdin gets EPIPE here once it ends.
                if let Ok(mut pipe) = tokio::net::unix::pipe::Sender::from_owned_fd(write) {
                    let _ = pipe.write_all(&json).await;
                }
            };
            let waited = tokio::time::timeout(timeout, async {
                let ((), status) = tokio::join!(feed, &mut ended);
                status
            })
            .await;
            let outcome = match waited {
                Ok(Ok(ExitStatus::Exited(0))) => None,
                Ok(Ok(status)) => Some(("failed", format!("ended with {}", words(status)))),
                // The loop has ended; so has everything it would report to.
                Ok(Err(_)) => None,
                Err(_) => {
                    // Not reaped yet (this task and the reaper share one thread), so the
                    // group still exists and its ID is not anyone else's.
                    if ended.try_recv().is_err() {
                        let _ = hangwatch_process::signal::signal_group(pgid, Signal::KILL);
                        let _ = tokio::time::timeout(AFTER_KILL, &mut ended).await;
                    }
                    Some((
                        "timed-out",
                        format!(
                            "ran past {} ms; its process group was killed",
                            timeout.as_millis()
                        ),
                    ))
                }
            };
            running.fetch_sub(1, Ordering::Relaxed);
            if let Some((why, detail)) = outcome {
                let _ = tx
                    .send(Msg::Alert {
                        service,
                        event: failed(&name, kind, why, detail),
                    })
                    .await;
            }
        });
    }
}

impl Hook {
    /// Counts a restart of `service`; whether it is now beyond `restarts`.
    fn restarts_beyond(&mut self, service: &str, now: Instant) -> bool {
        let within = self.cfg.restarts.within;
        let seen = self.restarts.entry(service.to_owned()).or_default();
        seen.push_back(now);
        while seen
            .front()
            .is_some_and(|t| now.duration_since(*t) >= within)
        {
            seen.pop_front();
        }
        seen.len() > self.cfg.restarts.count as usize
    }
}

/// Which `on` word an event is, if any.
fn kind_of(event: &Event) -> Option<AlertOn> {
    match event {
        Event::Stalled { .. } => Some(AlertOn::Stalled),
        Event::Incident(_) => Some(AlertOn::Incident),
        Event::GaveUp { .. } => Some(AlertOn::GaveUp),
        Event::Leak { .. } => Some(AlertOn::Leak),
        Event::Exited { stopped: false, .. } => Some(AlertOn::Down),
        Event::Restarting { .. } => Some(AlertOn::Restarting),
        _ => None,
    }
}

fn failed(alert: &str, on: AlertOn, why: &str, detail: String) -> Event {
    Event::AlertFailed {
        alert: alert.to_owned(),
        on: on.as_str().to_owned(),
        why: why.to_owned(),
        detail,
    }
}

fn words(status: ExitStatus) -> String {
    match status {
        ExitStatus::Exited(code) => format!("code {code}"),
        ExitStatus::Signalled { signal, .. } => format!("signal {signal}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_events_about_services_can_run_hooks() {
        assert_eq!(
            kind_of(&Event::Exited {
                pid: 1,
                status: hangwatch_protocol::report::ProgramStatus::Exited { code: 1 },
                uptime_ms: 1.0,
                stopped: false,
                killed: Vec::new(),
                oom: None,
            }),
            Some(AlertOn::Down)
        );
        assert_eq!(
            kind_of(&Event::Exited {
                pid: 1,
                status: hangwatch_protocol::report::ProgramStatus::Exited { code: 0 },
                uptime_ms: 1.0,
                stopped: true,
                killed: Vec::new(),
                oom: None,
            }),
            None,
            "a stop that was asked for is not a service going down"
        );
        let failure = failed("a", AlertOn::Stalled, "failed", String::new());
        assert_eq!(
            kind_of(&failure),
            None,
            "a hook's failure never runs a hook"
        );
    }
}
