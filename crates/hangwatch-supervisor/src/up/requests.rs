//! What the supervisor does with the control socket's requests (see [`super::control`] for the
//! socket itself): status, start/stop/restart of one service, the shutdown, a live diagnosis,
//! and reload.
//!
//! A request that changes a service acts through the same steps as everything else (a stop
//! with its grace and escalation, a start once the dependencies are ready) and parks its reply
//! as a [`Waiter`]; after every wake-up the loop answers the waiters whose service got where
//! they wanted. A client that hangs up meanwhile changes nothing: the service still gets there.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use hangwatch_config::{Config, ConfigError};
use hangwatch_process::Scope;
use hangwatch_protocol::control::{
    Diagnosis, DownReport, ErrorKind, ErrorReply, Heartbeat, ReloadReport, Reply, Request,
    ServiceStatus, State, Status,
};
use hangwatch_protocol::event::Event;
use hangwatch_protocol::report::{IncidentRecord, StallSource};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Cause, Msg, Phase, Supervisor, Svc, Then, millis, stop_plan, tree_rss};
use crate::state::LineSplitter;

/// A client waiting for a service to get somewhere.
pub(crate) struct Waiter {
    service: usize,
    want: Want,
    reply: oneshot::Sender<Reply>,
}

/// Where the waiter's service must get.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Down: no stop or diagnosis in progress.
    Down,
    /// Up again: a program newer than generation `after` is ready (or failed to become so).
    Up { after: u32 },
}

impl Supervisor {
    pub(super) fn on_request(
        &mut self,
        request: Request,
        reply: oneshot::Sender<Reply>,
        written: oneshot::Receiver<()>,
        now: Instant,
    ) {
        let answer = match request {
            Request::Status { service } => {
                let _ = reply.send(self.status_reply(service.as_deref(), now));
                return;
            }
            Request::Start { service } => self.start_request(&service, false, reply, now),
            Request::Restart { service } => self.start_request(&service, true, reply, now),
            Request::Stop { service } => self.stop_request(&service, reply, now),
            Request::Down => {
                self.emit(
                    None,
                    Event::Requested {
                        request: "down".to_owned(),
                    },
                );
                self.begin_shutdown("down requested".to_owned(), 0);
                self.down_waiters.push((reply, written));
                return;
            }
            Request::Diagnose { service, sample_ms } => {
                self.diagnose_request(&service, sample_ms, reply)
            }
            Request::Reload => {
                let _ = reply.send(self.reload());
                return;
            }
        };
        if let Some((reply, answer)) = answer {
            let _ = reply.send(answer);
        }
    }

    /// The index of the service called `name`, or the error to answer.
    fn find(&self, name: &str) -> Result<usize, ErrorReply> {
        self.services
            .iter()
            .position(|s| s.cfg.name == name && s.phase != Phase::Removed)
            .ok_or_else(|| {
                let known: Vec<&str> = self
                    .services
                    .iter()
                    .filter(|s| s.phase != Phase::Removed)
                    .map(|s| s.cfg.name.as_str())
                    .collect();
                ErrorReply::new(
                    ErrorKind::UnknownService,
                    format!("no service `{name}` (services: {})", known.join(", ")),
                )
            })
    }

    // ----- status -----

    pub(super) fn status_reply(&mut self, only: Option<&str>, now: Instant) -> Reply {
        let indices: Vec<usize> = match only {
            Some(name) => match self.find(name) {
                Ok(i) => vec![i],
                Err(answer) => return Reply::Error(answer),
            },
            None => (0..self.services.len())
                .filter(|&i| self.services[i].phase != Phase::Removed)
                .collect(),
        };
        // The tree's memory needs a scan of /proc (~25 µs a process): worth it for one
        // service, not for a listing that must stay fast with hundreds.
        let with_rss = only.is_some();
        let services = indices
            .iter()
            .map(|&i| {
                let mut status = self.service_status(i, now);
                if with_rss {
                    status.rss_bytes = self.tree_rss_of(i);
                }
                status
            })
            .collect();
        Reply::Status(Status {
            pid: self.own_pid,
            uptime_ms: millis(now.saturating_duration_since(self.began)),
            config: self.config.path.clone(),
            state_dir: self.state.path().to_path_buf(),
            shutting_down: self.shutdown.as_ref().map(|s| s.reason.clone()),
            services,
        })
    }

    /// The resident memory of service `i`'s whole tree, when it runs.
    fn tree_rss_of(&mut self, i: usize) -> Option<u64> {
        let main = self.services[i]
            .main
            .as_ref()
            .filter(|m| m.status.is_none())?;
        let scope = Scope::Service {
            adopter: self.own_pid,
            group: main.pgid,
            marker: main.marker.clone(),
        };
        self.table().ok().map(|table| tree_rss(&scope, table))
    }

    fn service_status(&mut self, i: usize, now: Instant) -> ServiceStatus {
        let svc = &self.services[i];
        let running = svc.main.as_ref().filter(|m| m.status.is_none());
        let heartbeat =
            svc.detector
                .as_ref()
                .and_then(|d| d.closest(now))
                .map(|(source, age, bound)| Heartbeat {
                    source: heartbeat_word(source).to_owned(),
                    age_ms: millis(age),
                    deadline_ms: millis(bound),
                });
        ServiceStatus {
            name: svc.cfg.name.clone(),
            state: state_of(svc.phase),
            pid: running.map(|m| m.id.pid),
            uptime_ms: running.map(|m| millis(now.saturating_duration_since(m.started))),
            restarts: svc.restarts.total,
            last_exit: svc.last_exit.clone(),
            heartbeat,
            restart_in_ms: match svc.phase {
                Phase::Backoff { until } => Some(millis(until.saturating_duration_since(now))),
                _ => None,
            },
            last_incident: svc.last_incident.clone(),
            status_text: svc.status_text.clone(),
            rss_bytes: None,
        }
    }

    // ----- start, stop, restart -----

    /// `start` (or `restart` when `again`): answered now, or parked until the service is up.
    fn start_request(
        &mut self,
        name: &str,
        again: bool,
        reply: oneshot::Sender<Reply>,
        now: Instant,
    ) -> Option<(oneshot::Sender<Reply>, Reply)> {
        let i = match self.find(name) {
            Ok(i) => i,
            Err(answer) => return Some((reply, Reply::Error(answer))),
        };
        if let Some(shutdown) = &self.shutdown {
            let message = format!("shutting down ({})", shutdown.reason);
            return Some((reply, error(ErrorKind::ShuttingDown, message)));
        }
        self.emit(
            Some(i),
            Event::Requested {
                request: if again { "restart" } else { "start" }.to_owned(),
            },
        );
        let after = self.services[i].generation;
        match self.services[i].phase {
            Phase::Starting | Phase::Ready | Phase::Diagnosing { .. } if again => {
                if let Err(err) = self.begin_stop(i, Cause::Requested, Then::Wait) {
                    let message = format!("cannot stop {name}: {err}");
                    return Some((reply, error(ErrorKind::Failed, message)));
                }
                self.restart_dependents(i);
            }
            Phase::Starting | Phase::Ready => {
                let answer = Reply::Service(self.service_status(i, now));
                return Some((reply, answer));
            }
            Phase::Stopping => {
                if let Some(stop) = &mut self.services[i].stop {
                    stop.then = Then::Wait;
                }
            }
            Phase::Diagnosing { .. } | Phase::Waiting => {}
            Phase::Backoff { .. }
            | Phase::Exited
            | Phase::Failed
            | Phase::Stopped
            | Phase::Held
            | Phase::Removed => {
                self.services[i].restarts = Default::default();
                self.services[i].phase = Phase::Waiting;
            }
        }
        // What it needs comes up with it (systemd starts a unit's requirements too).
        self.wake_dependencies(i);
        self.waiters.push(Waiter {
            service: i,
            want: Want::Up { after },
            reply,
        });
        None
    }

    /// Sets every dependency of `i` (transitively) that is down for good to start again.
    fn wake_dependencies(&mut self, i: usize) {
        let mut todo = self.services[i].deps.clone();
        let mut seen = vec![false; self.services.len()];
        while let Some(d) = todo.pop() {
            if std::mem::replace(&mut seen[d], true) {
                continue;
            }
            if matches!(
                self.services[d].phase,
                Phase::Exited | Phase::Failed | Phase::Stopped | Phase::Held
            ) {
                self.services[d].restarts = Default::default();
                self.services[d].phase = Phase::Waiting;
            }
            todo.extend(self.services[d].deps.iter().copied());
        }
    }

    /// `stop`: the service's tree is stopped and the service held down until `start`.
    fn stop_request(
        &mut self,
        name: &str,
        reply: oneshot::Sender<Reply>,
        now: Instant,
    ) -> Option<(oneshot::Sender<Reply>, Reply)> {
        let i = match self.find(name) {
            Ok(i) => i,
            Err(answer) => return Some((reply, Reply::Error(answer))),
        };
        self.emit(
            Some(i),
            Event::Requested {
                request: "stop".to_owned(),
            },
        );
        match self.services[i].phase {
            Phase::Starting | Phase::Ready | Phase::Diagnosing { .. } => {
                if let Err(err) = self.begin_stop(i, Cause::Requested, Then::Hold) {
                    let message = format!("cannot stop {name}: {err}");
                    return Some((reply, error(ErrorKind::Failed, message)));
                }
            }
            Phase::Stopping => {
                if let Some(stop) = &mut self.services[i].stop
                    && stop.then != Then::Down
                {
                    stop.then = Then::Hold;
                }
            }
            Phase::Waiting | Phase::Backoff { .. } | Phase::Exited | Phase::Failed => {
                if self.shutdown.is_none() {
                    self.services[i].phase = Phase::Held;
                }
            }
            Phase::Stopped | Phase::Held | Phase::Removed => {}
        }
        if self.services[i].stop.is_none() {
            return Some((reply, Reply::Service(self.service_status(i, now))));
        }
        self.waiters.push(Waiter {
            service: i,
            want: Want::Down,
            reply,
        });
        None
    }

    /// Answers every waiter whose service got where it wanted (or cannot any more).
    pub(super) fn answer_waiters(&mut self, now: Instant) {
        if self.waiters.is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut self.waiters);
        for waiter in waiters {
            if waiter.reply.is_closed() {
                continue;
            }
            let i = waiter.service;
            let svc = &self.services[i];
            let answer = match waiter.want {
                Want::Down => {
                    if svc.stop.is_some() || matches!(svc.phase, Phase::Diagnosing { .. }) {
                        None
                    } else {
                        Some(Reply::Service(self.service_status(i, now)))
                    }
                }
                Want::Up { after } => self.up_answer(i, after, now),
            };
            match answer {
                Some(answer) => {
                    let _ = waiter.reply.send(answer);
                }
                None => self.waiters.push(waiter),
            }
        }
    }

    /// Whether a `start`/`restart` of service `i` is settled: ready, or failed to get there.
    fn up_answer(&mut self, i: usize, after: u32, now: Instant) -> Option<Reply> {
        let svc = &self.services[i];
        let name = svc.cfg.name.clone();
        if svc.generation > after {
            match svc.phase {
                Phase::Ready => return Some(Reply::Service(self.service_status(i, now))),
                Phase::Starting | Phase::Stopping | Phase::Diagnosing { .. } => return None,
                // Stopped again with a dependency: as long as the dependencies may come up.
                Phase::Waiting => {}
                _ => {
                    let status = self.service_status(i, now);
                    let ended = status
                        .last_exit
                        .as_ref()
                        .map(|e| format!(": {} ({})", e.status, e.reason))
                        .unwrap_or_default();
                    return Some(error(
                        ErrorKind::Failed,
                        format!(
                            "{name} did not become ready{ended}; it is {} now",
                            status.state.as_str()
                        ),
                    ));
                }
            }
        }
        // Waiting: fine while its dependencies may still come up.
        if let Some(&d) = svc.deps.iter().find(|&&d| {
            matches!(
                self.services[d].phase,
                Phase::Failed | Phase::Exited | Phase::Held | Phase::Removed
            )
        }) {
            let dep = &self.services[d];
            return Some(error(
                ErrorKind::Failed,
                format!(
                    "{name} cannot start: its dependency {} is {}",
                    dep.cfg.name,
                    state_of(dep.phase).as_str()
                ),
            ));
        }
        match svc.phase {
            Phase::Failed | Phase::Exited | Phase::Held | Phase::Stopped | Phase::Removed => {
                Some(error(
                    ErrorKind::Failed,
                    format!("{name} is {} now", state_of(svc.phase).as_str()),
                ))
            }
            _ => None,
        }
    }

    /// The shutdown began: nothing will start any more.
    pub(super) fn fail_waiters_for_shutdown(&mut self) {
        let reason = self
            .shutdown
            .as_ref()
            .map(|s| s.reason.clone())
            .unwrap_or_default();
        let waiters = std::mem::take(&mut self.waiters);
        for waiter in waiters {
            match waiter.want {
                // The shutdown stops it anyway; answered when it is down.
                Want::Down => self.waiters.push(waiter),
                Want::Up { .. } => {
                    let message = format!("shutting down ({reason})");
                    let _ = waiter.reply.send(error(ErrorKind::ShuttingDown, message));
                }
            }
        }
    }

    /// Answers the clients of `down`, and waits (briefly) until their replies are on the wire:
    /// the process exits right after.
    pub(super) async fn answer_down(
        &mut self,
        clean: &[String],
        killed: &[String],
        took: Duration,
        exit_code: i32,
    ) {
        let report = DownReport {
            took_ms: millis(took),
            clean: clean.to_vec(),
            killed: killed.to_vec(),
            exit_code,
        };
        for waiter in std::mem::take(&mut self.waiters) {
            let i = waiter.service;
            let _ = waiter
                .reply
                .send(Reply::Service(self.service_status(i, Instant::now())));
        }
        let mut written = Vec::new();
        for (reply, done) in std::mem::take(&mut self.down_waiters) {
            if reply.send(Reply::Down(report.clone())).is_ok() {
                written.push(done);
            }
        }
        let all = async {
            for done in written {
                let _ = done.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), all).await;
    }

    // ----- diagnose -----

    fn diagnose_request(
        &mut self,
        name: &str,
        sample_ms: Option<u64>,
        reply: oneshot::Sender<Reply>,
    ) -> Option<(oneshot::Sender<Reply>, Reply)> {
        let i = match self.find(name) {
            Ok(i) => i,
            Err(answer) => return Some((reply, Reply::Error(answer))),
        };
        let svc = &self.services[i];
        let Some(main) = svc.main.as_ref().filter(|m| m.status.is_none()) else {
            let message = format!(
                "{name} is not running (it is {})",
                state_of(svc.phase).as_str()
            );
            return Some((reply, error(ErrorKind::Failed, message)));
        };
        let pid = main.id.pid;
        let mut spec = self.diagnose.clone();
        if let Some(sample_ms) = sample_ms {
            spec.sample = Duration::from_millis(sample_ms.min(60_000));
        }
        let reason = format!("{name}-requested");
        let tx = self.tx.clone();
        self.emit(
            Some(i),
            Event::Requested {
                request: "diagnose".to_owned(),
            },
        );
        tokio::spawn(async move {
            let record = super::diagnose_off_loop(spec, pid, reason).await;
            let _ = tx
                .send(Msg::Inspected {
                    service: i,
                    record,
                    reply,
                })
                .await;
        });
        None
    }

    pub(super) fn on_inspected(
        &mut self,
        i: usize,
        record: IncidentRecord,
        reply: oneshot::Sender<Reply>,
    ) {
        if let Some(path) = &record.text_path {
            self.services[i].last_incident = Some(PathBuf::from(path));
        }
        self.emit(Some(i), Event::Incident(record.clone()));
        let answer = match (&record.error, &record.text_path) {
            (Some(err), None) => error(ErrorKind::Failed, err.clone()),
            (_, path) => {
                let text = path
                    .as_ref()
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .unwrap_or_else(|| record.verdict.join("\n"));
                Reply::Diagnosis(Diagnosis {
                    service: self.services[i].cfg.name.clone(),
                    incident: record,
                    text,
                })
            }
        };
        let _ = reply.send(answer);
    }

    // ----- reload -----

    pub(super) fn reload_on_hangup(&mut self) {
        if let Reply::Error(err) = self.reload() {
            let mut text = format!("SIGHUP: reload refused: {}", err.message);
            for line in &err.diagnostics {
                text.push_str("\n  ");
                text.push_str(line);
            }
            self.note(&text);
        }
    }

    /// Reads the config again and applies the difference: new services start, removed ones
    /// stop, changed ones restart with their new definition, the rest are untouched. A config
    /// that does not load changes nothing.
    pub(super) fn reload(&mut self) -> Reply {
        if let Some(shutdown) = &self.shutdown {
            let message = format!("shutting down ({})", shutdown.reason);
            return error(ErrorKind::ShuttingDown, message);
        }
        let config = match Config::load(&self.config.path) {
            Ok(config) => config,
            Err(err) => {
                let diagnostics = err.diagnostics().iter().map(|d| d.to_string()).collect();
                let message = match &err {
                    ConfigError::Invalid(_) => format!(
                        "{} is not valid; nothing changed",
                        self.config.path.display()
                    ),
                    other => format!("{other}; nothing changed"),
                };
                return Reply::Error(ErrorReply {
                    kind: ErrorKind::Config,
                    message,
                    diagnostics,
                });
            }
        };
        let mut report = ReloadReport::default();
        for (key, changed) in [
            ("state_dir", config.state_dir != self.config.state_dir),
            (
                "events_max_size",
                config.events_max_size != self.config.events_max_size,
            ),
            ("events_keep", config.events_keep != self.config.events_keep),
            // [http]
            ("http", config.http != self.config.http),
            // [alert]
            ("alert", config.alerts != self.config.alerts),
        ] {
            if changed {
                report.not_applied.push(key.to_owned());
            }
        }
        let wanted: HashMap<&str, &hangwatch_config::Service> = config
            .services
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        // Removed.
        for i in 0..self.services.len() {
            let svc = &self.services[i];
            if svc.phase == Phase::Removed || wanted.contains_key(svc.cfg.name.as_str()) {
                continue;
            }
            report.removed.push(svc.cfg.name.clone());
            self.retire(i, Then::Remove);
        }
        // Changed, unchanged, added.
        let logs_dir = self.state.logs_dir();
        for cfg in &config.services {
            let existing = self.services.iter().position(|s| s.cfg.name == cfg.name);
            match existing {
                Some(i) if self.services[i].phase == Phase::Removed => {
                    report.added.push(cfg.name.clone());
                    self.apply_definition(i, cfg.clone());
                    self.services[i].phase = Phase::Waiting;
                }
                Some(i) if self.services[i].cfg == *cfg && self.services[i].pending.is_none() => {
                    report.unchanged.push(cfg.name.clone());
                }
                Some(i) => {
                    report.changed.push(cfg.name.clone());
                    if self.services[i].phase.running() {
                        self.services[i].pending = Some(cfg.clone());
                        self.retire(i, Then::Wait);
                        self.restart_dependents(i);
                    } else {
                        self.apply_definition(i, cfg.clone());
                        if self.services[i].phase != Phase::Held {
                            self.services[i].phase = Phase::Waiting;
                        }
                    }
                }
                None => {
                    report.added.push(cfg.name.clone());
                    let names = HashMap::new();
                    self.services.push(Svc::new(cfg.clone(), &logs_dir, &names));
                }
            }
        }
        self.config.shutdown_timeout = config.shutdown_timeout;
        self.config.services = config.services;
        self.relink();
        self.emit(
            None,
            Event::Reloaded {
                added: report.added.clone(),
                removed: report.removed.clone(),
                changed: report.changed.clone(),
            },
        );
        Reply::Reloaded(report)
    }

    /// Stops service `i` for a reload (or marks it so at once when nothing runs).
    fn retire(&mut self, i: usize, then: Then) {
        match self.services[i].phase {
            Phase::Starting | Phase::Ready | Phase::Diagnosing { .. } => {
                if let Err(err) = self.begin_stop(i, Cause::Reload, then) {
                    tracing::warn!(%err, "cannot stop a service for a reload");
                }
            }
            Phase::Stopping => {
                if let Some(stop) = &mut self.services[i].stop {
                    stop.then = then;
                }
            }
            _ => {
                if then == Then::Remove {
                    self.services[i].phase = Phase::Removed;
                }
            }
        }
    }

    /// Gives service `i` a new definition (it does not run).
    pub(super) fn apply_definition(&mut self, i: usize, cfg: hangwatch_config::Service) {
        let log = super::open_log(&self.state.logs_dir(), &cfg);
        let svc = &mut self.services[i];
        svc.plan = stop_plan(&cfg);
        svc.restarts = Default::default();
        svc.log = log;
        svc.split = [LineSplitter::new(), LineSplitter::new()];
        svc.cfg = cfg;
    }

    /// Recomputes every service's dependencies by name (after a reload).
    fn relink(&mut self) {
        let names: HashMap<String, usize> = self
            .services
            .iter()
            .enumerate()
            .filter(|(_, s)| s.phase != Phase::Removed)
            .map(|(i, s)| (s.cfg.name.clone(), i))
            .collect();
        for svc in &mut self.services {
            let cfg = svc.pending.as_ref().unwrap_or(&svc.cfg);
            svc.deps = cfg
                .depends_on
                .iter()
                .filter_map(|d| names.get(d).copied())
                .collect();
        }
    }

    // ----- `up --detach` -----

    /// Writes `started` to the ready fd once no service is waiting (with a chance to start)
    /// or starting.
    pub(super) fn tell_started(&mut self) {
        if self.ready_fd.is_none() {
            return;
        }
        if self.shutdown.is_none() {
            let pending = self.services.iter().any(|s| match s.phase {
                Phase::Starting => true,
                Phase::Waiting => s.deps.iter().all(|&d| {
                    matches!(
                        self.services[d].phase,
                        Phase::Waiting | Phase::Starting | Phase::Ready
                    )
                }),
                _ => false,
            });
            if pending {
                return;
            }
            if let Some(fd) = self.ready_fd.take() {
                let mut file = std::fs::File::from(fd);
                let _ = file.write_all(b"started\n");
            }
        } else {
            // Closed without a word: the supervisor is on its way out.
            self.ready_fd = None;
        }
    }
}

fn error(kind: ErrorKind, message: String) -> Reply {
    Reply::Error(ErrorReply::new(kind, message))
}

fn state_of(phase: Phase) -> State {
    match phase {
        Phase::Waiting => State::Waiting,
        Phase::Starting => State::Starting,
        Phase::Ready => State::Ready,
        Phase::Backoff { .. } => State::Backoff,
        Phase::Diagnosing { .. } => State::Diagnosing,
        Phase::Stopping => State::Stopping,
        Phase::Exited => State::Exited,
        Phase::Failed => State::Failed,
        Phase::Stopped | Phase::Held | Phase::Removed => State::Stopped,
    }
}

fn heartbeat_word(source: StallSource) -> &'static str {
    match source {
        StallSource::Notify => "watchdog",
        StallSource::File => "heartbeat-file",
        StallSource::Output => "output",
        other => other.as_str(),
    }
}
