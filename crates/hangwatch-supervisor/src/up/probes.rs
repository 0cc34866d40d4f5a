//! Readiness and liveness probes (`tcp`, `http`, `exec`): launched when due, their results
//! fed back to the loop.

use std::ffi::OsString;
use std::os::fd::OwnedFd;

use hangwatch_config::{Check, Readiness};
use hangwatch_process::{ProgramCommand, SpawnOptions, spawn};
use hangwatch_protocol::event::Event;
use hangwatch_protocol::report::{StallSource, StopCause};
use tokio::time::Instant;

use super::service::{millis, run_as, service_env};
use super::state::{Life, ProbeClock};
use super::{Msg, Supervisor};

/// What one probe attempt found.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// The service answered as it should.
    Passed,
    /// It did not: counted against it.
    Failed(String),
    /// hangwatch could not make the attempt (out of descriptors, memory or processes). That
    /// says nothing of the service, so it is not counted against it; it is said once per
    /// spell as a `degraded` event, and the next attempt comes at the usual interval.
    NotMade(String),
}

impl Attempt {
    /// A TCP or HTTP probe's result.
    fn of(result: Result<(), crate::probe::ProbeError>) -> Attempt {
        match result {
            Ok(()) => Attempt::Passed,
            Err(error) if error.is_local_shortage() => Attempt::NotMade(error.to_string()),
            Err(error) => Attempt::Failed(error.to_string()),
        }
    }
}

/// An `exec` probe in flight.
pub(super) struct ExecProbe {
    pub(super) service: usize,
    pub(super) generation: u32,
    pub(super) ready: bool,
    pub(super) pgid: i32,
    pub(super) deadline: Instant,
}

/// The clock of service's readiness (`ready`) or liveness probe, in the states that have one.
fn probe_clock(life: &mut Life, ready: bool) -> Option<&mut ProbeClock> {
    match life {
        Life::Starting { ready_probe, .. } if ready => ready_probe.as_mut(),
        Life::Ready { watch, .. } if !ready => watch.live_probe.as_mut(),
        _ => None,
    }
}

impl Supervisor {
    pub(super) fn launch_probe(&mut self, i: usize, ready: bool, now: Instant) {
        let svc = &mut self.services[i];
        let probe = if ready {
            match &svc.cfg.ready {
                Readiness::Probe(probe) => probe.clone(),
                _ => return,
            }
        } else {
            match &svc.cfg.liveness.probe {
                Some(probe) => probe.clone(),
                None => return,
            }
        };
        let Some(clock) = probe_clock(&mut svc.life, ready) else {
            return;
        };
        clock.in_flight = true;
        if let Some(telemetry) = &self.telemetry {
            telemetry.probe_launched(&svc.cfg.name, crate::http::ProbeKind::of(ready), now);
        }
        let generation = svc.generation;
        let timeout = probe.timeout;
        match probe.check {
            Check::Tcp(addr) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = Attempt::of(crate::probe::tcp(&addr, timeout).await);
                    let _ = tx
                        .send(Msg::Probe {
                            service: i,
                            generation,
                            ready,
                            result,
                        })
                        .await;
                });
            }
            Check::Http(url) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = Attempt::of(crate::probe::http(&url, timeout).await.map(drop));
                    let _ = tx
                        .send(Msg::Probe {
                            service: i,
                            generation,
                            ready,
                            result,
                        })
                        .await;
                });
            }
            Check::Exec(command) => {
                let argv: Vec<OsString> = command.argv.iter().map(OsString::from).collect();
                let Some(mut program) = ProgramCommand::from_argv(&argv) else {
                    return;
                };
                // As the service's user, as systemd runs `ExecStartPre=` and the like: a probe
                // is the service's code and gets no more privilege than the service.
                program.run_as = match run_as(svc.cfg.user.as_deref()) {
                    Ok(user) => user,
                    Err(error) => {
                        let failed = Attempt::Failed(error);
                        return self.on_probe_result(i, generation, ready, failed, now);
                    }
                };
                program.cwd = Some(svc.cfg.cwd.clone());
                program.env = service_env(&svc.cfg);
                let null = std::fs::File::options()
                    .write(true)
                    .open("/dev/null")
                    .map(OwnedFd::from);
                if let Ok(null) = null
                    && let Ok(copy) = null.try_clone()
                {
                    program.stdout = Some(null);
                    program.stderr = Some(copy);
                }
                match spawn(
                    program,
                    SpawnOptions {
                        foreground_tty: false,
                        die_with_parent: true,
                    },
                ) {
                    Ok(spawned) => {
                        self.exec_probes.insert(
                            spawned.id.pid,
                            ExecProbe {
                                service: i,
                                generation,
                                ready,
                                pgid: spawned.pgid,
                                deadline: now + timeout,
                            },
                        );
                    }
                    Err(err) => {
                        let attempt = if err.is_local_shortage() {
                            Attempt::NotMade(err.to_string())
                        } else {
                            Attempt::Failed(err.to_string())
                        };
                        self.on_probe_result(i, generation, ready, attempt, now);
                    }
                }
            }
        }
    }

    pub(super) fn on_probe_result(
        &mut self,
        i: usize,
        generation: u32,
        ready: bool,
        result: Attempt,
        now: Instant,
    ) {
        let svc = &mut self.services[i];
        if svc.generation != generation {
            return;
        }
        let (every, failures_allowed) = {
            let probe = if ready {
                match &svc.cfg.ready {
                    Readiness::Probe(p) => p,
                    _ => return,
                }
            } else {
                match &svc.cfg.liveness.probe {
                    Some(p) => p,
                    None => return,
                }
            };
            (probe.every, probe.failures.max(1))
        };
        let Some(clock) = probe_clock(&mut svc.life, ready) else {
            return;
        };
        clock.in_flight = false;
        clock.next = now + every;
        if let Attempt::NotMade(error) = result {
            if !clock.not_made {
                clock.not_made = true;
                let which = if ready { "readiness" } else { "liveness" };
                self.emit(
                    Some(i),
                    Event::Degraded {
                        part: "probe".to_owned(),
                        note: format!(
                            "the {which} probe could not be made ({error}); hangwatch itself \
                             is short, so it is not counted against the service and is \
                             tried again every {}",
                            humantime::format_duration(every)
                        ),
                    },
                );
            }
            return;
        }
        clock.not_made = false;
        if let Some(telemetry) = &self.telemetry {
            let kind = crate::http::ProbeKind::of(ready);
            telemetry.probe_finished(&svc.cfg.name, kind, matches!(result, Attempt::Passed), now);
        }
        match result {
            Attempt::Passed => {
                clock.failures = 0;
                if ready {
                    self.mark_ready(i, "probe", now);
                }
            }
            Attempt::Failed(error) => {
                clock.failures += 1;
                let failed = !ready && clock.failures >= failures_allowed;
                svc.last_probe_error = Some(error.clone());
                if failed {
                    let bound_ms = svc
                        .cfg
                        .liveness
                        .probe
                        .as_ref()
                        .map_or(0, |p| millis(p.every) * u64::from(p.failures));
                    self.emit(
                        Some(i),
                        Event::Stalled {
                            source: StallSource::Probe,
                            bound_ms,
                            late_ms: 0.0,
                            detail: Some(format!(
                                "{failures_allowed} probes failed in a row, last: {error}"
                            )),
                        },
                    );
                    self.on_stall(i, StopCause::Stall, now);
                }
            }
            Attempt::NotMade(_) => unreachable!("handled above"),
        }
    }
}
