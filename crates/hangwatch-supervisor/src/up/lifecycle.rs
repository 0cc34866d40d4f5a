//! Starting, exits, stops, and the restart decision: the effects of [`super::machine`] that
//! touch processes.

use std::ffi::OsString;
use std::time::Duration;

use hangwatch_config::Readiness;
use hangwatch_leaks::Part;
use hangwatch_process::reap::reap_exited;
use hangwatch_process::{ExitStatus, ProgramCommand, SpawnOptions, TreeStop, spawn};
use hangwatch_protocol::event::Event;
use hangwatch_protocol::report::{NotifySummary, ProcessInfo, ProgramStatus, StopCause};
use tokio::time::Instant;

use super::machine::{self, Policy};
use super::policy::Ending;
use super::probes::Attempt;
use super::service::{millis, ms, run_as, service_env};
use super::state::{Life, Main, ProbeClock, Then, Tree, Watch};
use super::{Supervisor, UpError, io_err, output};
use crate::liveness::detector::{Detector, LivenessSpec};
use crate::state::INSTANCE_ENV;

impl Supervisor {
    // ----- starting -----

    /// Starts service `i` now.
    pub(super) fn start(&mut self, i: usize, now: Instant) {
        let generation = self.services[i].generation + 1;
        self.services[i].generation = generation;
        let marker = format!("{}/{}/{generation}", self.token, self.services[i].cfg.name);
        let command = match self.command_for(i, &marker) {
            Ok(command) => command,
            Err(error) => return self.start_failed(i, error, now),
        };
        let spawned = spawn(
            command,
            SpawnOptions {
                foreground_tty: false,
                die_with_parent: true,
            },
        );
        let spawned = match spawned {
            Ok(spawned) => spawned,
            Err(err) => return self.start_failed(i, err.to_string(), now),
        };
        if let Some(leaks) = &self.leaks {
            leaks.note_started(spawned.id.pid);
        }
        self.oom.rebase_cgroup();
        // The program's clocks (uptime, watchdog and silence deadlines, probes) start at its
        // spawn: `now` may have been read before the spawns of a whole start level.
        let now = Instant::now();
        let svc = &mut self.services[i];
        svc.stall_deferred = None;
        let live = &svc.cfg.liveness;
        let spec = LivenessSpec {
            watchdog: live.watchdog,
            file: live.heartbeat_file.clone(),
            silence: live.stall_on_silence,
            warn: live.stall_warn,
            exit_grace: svc.cfg.stop_grace,
        };
        let watch = Watch {
            detector: (spec.watchdog.is_some() || spec.file.is_some() || spec.silence.is_some())
                .then(|| Detector::new(&spec, now)),
            // Liveness probes begin once the service is ready (see `machine::ready`).
            live_probe: None,
            memory_check: svc.cfg.memory_limit.map(|_| now + MEMORY_EVERY),
            early: None,
            deferral: None,
        };
        let ready_probe = match &svc.cfg.ready {
            Readiness::Probe(probe) => Some(ProbeClock {
                next: now,
                in_flight: false,
                give_up: Some(now + probe.within),
                failures: 0,
                not_made: false,
            }),
            _ => None,
        };
        svc.life = Life::Starting {
            main: Main {
                id: spawned.id,
                pgid: spawned.pgid,
                started: now,
                marker: format!("HANGWATCH_ID={marker}").into_bytes(),
                status: None,
            },
            watch,
            ready_probe,
        };
        svc.notified = NotifySummary {
            socket: self.notify.env_value().to_string_lossy().into_owned(),
            watchdog_ms: live.watchdog.map(millis),
            ..NotifySummary::default()
        };
        let restarts = svc.restarts.total;
        let ready_now = svc.cfg.ready == Readiness::Started;
        self.instance_dirty = true;
        self.emit(
            Some(i),
            Event::Started {
                pid: spawned.id.pid,
                restarts,
            },
        );
        if ready_now {
            self.mark_ready(i, "started", now);
        }
    }

    /// The command line, environment and output pipes of the next start of service `i`.
    fn command_for(&self, i: usize, marker: &str) -> Result<ProgramCommand, String> {
        let cfg = &self.services[i].cfg;
        let argv: Vec<OsString> = cfg.command.argv.iter().map(OsString::from).collect();
        let mut command = ProgramCommand::from_argv(&argv).ok_or("empty command")?;
        command.run_as = run_as(cfg.user.as_deref())?;
        command.cwd = Some(cfg.cwd.clone());
        command.env = service_env(cfg);
        command
            .env
            .push(("NOTIFY_SOCKET".into(), self.notify.env_value()));
        if let Some(watchdog) = cfg.liveness.watchdog {
            command.env.push((
                "WATCHDOG_USEC".into(),
                watchdog.as_micros().to_string().into(),
            ));
            command.pid_env = Some("WATCHDOG_PID".into());
        }
        command
            .env
            .push(("HANGWATCH_SERVICE".into(), cfg.name.clone().into()));
        command.env.push((
            "HANGWATCH_RESTARTS".into(),
            self.services[i].restarts.total.to_string().into(),
        ));
        command
            .env
            .push((INSTANCE_ENV.into(), self.token.clone().into()));
        command.env.push(("HANGWATCH_ID".into(), marker.into()));
        let ends = output::open(i, self.services[i].generation, &self.out_tx)
            .map_err(|err| format!("cannot create output pipes: {err}"))?;
        command.stdout = Some(ends.stdout);
        command.stderr = Some(ends.stderr);
        Ok(command)
    }

    fn start_failed(&mut self, i: usize, error: String, now: Instant) {
        self.emit(Some(i), Event::StartFailed { error });
        self.services[i].life = Life::Exited;
        self.decide(i, Ending::StartFailed, Duration::ZERO, "start-failed", now);
    }

    /// Service `i` is ready (`by`: `started`, `notify` or `probe`).
    pub(super) fn mark_ready(&mut self, i: usize, by: &str, now: Instant) {
        let svc = &mut self.services[i];
        let effects = machine::ready(&mut svc.life, by, svc.cfg.liveness.probe.as_ref(), now);
        self.perform(i, effects, now);
    }

    // ----- exits -----

    pub(super) fn on_sigchld(&mut self) -> Result<(), UpError> {
        let reaped = reap_exited().map_err(io_err("reap exited children"))?;
        let now = Instant::now();
        for (pid, status) in reaped {
            if let Some(leaks) = &self.leaks {
                leaks.note_reaped(pid);
            }
            if let Some(alerts) = &self.alerts
                && alerts.borrow_mut().reaped(pid, status)
            {
                continue;
            }
            if let Some(probe) = self.exec_probes.remove(&pid) {
                let result = match status {
                    ExitStatus::Exited(0) => Attempt::Passed,
                    other => Attempt::Failed(format!(
                        "exited with {}",
                        super::service::describe_status(other)
                    )),
                };
                self.on_probe_result(probe.service, probe.generation, probe.ready, result, now);
                continue;
            }
            let Some(i) = self
                .services
                .iter()
                .position(|s| s.life.live_main().is_some_and(|m| m.id.pid == pid))
            else {
                continue;
            };
            // A program that was up (not being stopped) died of a signal hangwatch did not
            // send: if it was KILL, ask the kernel log whether the OOM killer sent it. The look
            // reads only what the kernel logged since the last one, bounded (see `crate::oom`).
            let life = &self.services[i].life;
            let oom = match life.live_main() {
                Some(main) if life.up() => self.oom.check(main.id, status),
                _ => None,
            };
            let effects = machine::exited(&mut self.services[i].life, status, oom, now);
            self.perform(i, effects, now);
        }
        self.rescan = true;
        Ok(())
    }

    // ----- stops -----

    /// Begins stopping service `i`'s tree (nothing when its program does not run).
    pub(super) fn stop_service(&mut self, i: usize, cause: StopCause, then: Then, now: Instant) {
        let effects = machine::stop(&mut self.services[i].life, cause, then, now);
        self.perform(i, effects, now);
    }

    /// Signals the tree of service `i`'s due stop; a failure is an event, and the stop is
    /// tried again (see [`machine::signal_failed`]).
    pub(super) fn signal_tree(&mut self, i: usize, now: Instant) {
        match self.try_signal_tree(i) {
            Ok(()) => self.try_finish_stop(i, now),
            Err(err) => {
                tracing::warn!(service = %self.services[i].cfg.name, %err, "cannot stop");
                let effects =
                    machine::signal_failed(&mut self.services[i].life, err.to_string(), now);
                self.perform(i, effects, now);
            }
        }
    }

    fn try_signal_tree(&mut self, i: usize) -> Result<(), UpError> {
        let Life::Stopping { main, stop } = &self.services[i].life else {
            return Ok(());
        };
        if !matches!(stop.tree, Tree::Due { .. }) {
            return Ok(());
        }
        let cause = stop.cause;
        let scope = main.scope(self.own_pid);
        let mut plan = self.services[i].plan;
        if let Some(shutdown) = &self.shutdown {
            plan.grace = plan
                .grace
                .min(shutdown.deadline.saturating_duration_since(Instant::now()));
        }
        // A last look at what the tree holds before it is signalled (the leak audit), except in
        // a shutdown: one look at every service costs ~0.5 ms per process, which would delay
        // the first signal of the last service by the sum. The looks taken after each
        // creation in /dev/shm still stand.
        if cause != StopCause::Leftovers
            && self.shutdown.is_none()
            && let Some(leaks) = &self.leaks
        {
            leaks.observe();
        }
        let watch = self.watch.clone();
        let table = self.table()?;
        let mut tree =
            TreeStop::begin_in(plan, scope, table, watch).map_err(io_err("stop a service"))?;
        if cause != StopCause::Leftovers || tree.signalled_any() {
            self.emit(
                Some(i),
                Event::Stopping {
                    cause,
                    signal: plan.signal.name().to_owned(),
                    grace_ms: millis(plan.grace),
                },
            );
        }
        if self.shutdown.as_ref().is_some_and(|s| s.killing)
            && let Some(table) = &self.table
        {
            kill_at_once(&mut tree, table)?;
        }
        machine::signalled(&mut self.services[i].life, tree);
        Ok(())
    }

    /// Refreshes every stop in progress from one scan (after exits), and finishes those whose
    /// tree is gone.
    pub(super) fn refresh_stops(&mut self, now: Instant) -> Result<(), UpError> {
        if !std::mem::take(&mut self.rescan)
            || self.services.iter().all(|s| s.life.stop().is_none())
        {
            return Ok(());
        }
        self.table = None;
        self.table()?;
        for i in 0..self.services.len() {
            if let (Some(tree), Some(table)) = (self.services[i].life.tree_mut(), &self.table) {
                tree.refresh_in(table)
                    .map_err(io_err("rescan a stopping tree"))?;
            }
        }
        for i in 0..self.services.len() {
            self.try_finish_stop(i, now);
        }
        Ok(())
    }

    /// Finishes the stop of service `i` if its tree is gone and its program reaped.
    pub(super) fn try_finish_stop(&mut self, i: usize, now: Instant) {
        let Some(done) = machine::finish_stop(&mut self.services[i].life, |tree| !tree.any_alive())
        else {
            return;
        };
        let escalated = done.tree.escalated();
        let records = done.tree.into_records();
        let main = &done.main;
        let mut part = Part::program(main.id, main.pgid);
        for record in &records {
            part.add(&record.process);
        }
        let uptime = main.uptime(now);
        if done.cause == StopCause::Leftovers {
            if !records.is_empty() {
                self.emit(
                    Some(i),
                    Event::Leak {
                        leftovers: records.iter().map(|r| r.process.clone()).collect(),
                        objects: Vec::new(),
                    },
                );
            }
        } else {
            let killed: Vec<ProcessInfo> = records
                .iter()
                .filter(|r| r.killed)
                .map(|r| r.process.clone())
                .collect();
            self.services[i].last_exit = main
                .status
                .map(|status| super::service::last_exit(status, done.cause.ending_word()));
            let status = main
                .status
                .map_or(ProgramStatus::Exited { code: -1 }, ExitStatus::to_record);
            self.emit(
                Some(i),
                Event::Exited {
                    pid: main.id.pid,
                    status,
                    uptime_ms: ms(uptime),
                    stopped: true,
                    killed,
                    oom: None,
                },
            );
        }
        if done.cause == StopCause::Shutdown {
            self.services[i].killed_at_shutdown = Some(escalated);
        }
        self.instance_dirty = true;
        if let Some(cfg) = done.pending {
            let logs_dir = self.state.logs_dir();
            self.services[i].redefine(*cfg, &logs_dir);
        }
        if let Then::Decide(ending) = done.then {
            let reason = match done.cause {
                StopCause::Leftovers => "exited",
                cause => cause.ending_word(),
            };
            self.decide(i, ending, uptime, reason, now);
        }
        // After the restart: the audit must not delay it.
        self.audit_leaks(i, &part);
    }

    /// Applies the restart policy after service `i` ended.
    pub(super) fn decide(
        &mut self,
        i: usize,
        ending: Ending,
        uptime: Duration,
        reason: &str,
        now: Instant,
    ) {
        let shutting_down = self.shutdown.is_some();
        let svc = &mut self.services[i];
        svc.last_ending = Some(ending);
        let effects = machine::decide(
            &mut svc.life,
            Policy {
                cfg: &svc.cfg,
                restarts: &mut svc.restarts,
                shutting_down,
                random: fastrand::f64(),
            },
            ending,
            uptime,
            reason,
            now,
        );
        self.perform(i, effects, now);
    }

    /// Stops the running dependents of service `i` that declared `restart_with_dependency`;
    /// they start again once `i` is ready.
    pub(super) fn restart_dependents(&mut self, i: usize, now: Instant) {
        let dependents: Vec<usize> = (0..self.services.len())
            .filter(|&d| {
                let svc = &self.services[d];
                svc.deps.contains(&i) && svc.cfg.restart_with_dependency && svc.life.up()
            })
            .collect();
        for d in dependents {
            self.stop_service(d, StopCause::Dependency, Then::Wait, now);
        }
    }
}

/// KILL for every process of `tree` now, cleanup helpers included: the helpers' settle step,
/// if any, is skipped.
pub(super) fn kill_at_once(
    tree: &mut TreeStop,
    table: &hangwatch_process::tree::ProcessTable,
) -> Result<(), UpError> {
    tree.kill_now_in(table).map_err(io_err("kill a service"))?;
    if tree.grace_deadline().is_some() {
        tree.kill_now_in(table).map_err(io_err("kill a service"))?;
    }
    Ok(())
}

/// How often the memory of a service with a `memory_limit` is sampled.
pub(super) const MEMORY_EVERY: Duration = Duration::from_secs(1);
