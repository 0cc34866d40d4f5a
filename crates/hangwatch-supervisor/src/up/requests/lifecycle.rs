//! `start`, `stop`, `restart` and `down`: parked until the service gets where the client
//! asked, and answered then (see [`super::Waiter`]).

use std::time::Duration;

use hangwatch_protocol::control::{DownReport, ErrorKind, Reply};
use hangwatch_protocol::event::Event;
use hangwatch_protocol::report::StopCause;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::super::Supervisor;
use super::super::machine;
use super::super::service::millis;
use super::super::state::{Life, Then};
use super::{Waiter, Want, error};

impl Supervisor {
    /// `start` (or `restart` when `again`): answered now, or parked until the service is up.
    pub(in crate::up) fn start_request(
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
        match &self.services[i].life {
            Life::Starting { .. } | Life::Ready { .. } | Life::Diagnosing { .. } if again => {
                self.stop_service(i, StopCause::Request, Then::Wait, now);
                self.restart_dependents(i, now);
            }
            Life::Starting { .. } | Life::Ready { .. } => {
                let answer = Reply::Service(self.service_status(i, now));
                return Some((reply, answer));
            }
            Life::Stopping { .. } => machine::redirect(&mut self.services[i].life, Then::Wait),
            Life::Diagnosing { .. } | Life::Waiting => {}
            Life::Backoff { .. }
            | Life::Exited
            | Life::Failed
            | Life::Stopped
            | Life::Held
            | Life::Removed => {
                self.services[i].restarts = Default::default();
                self.services[i].life = Life::Waiting;
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
    pub(in crate::up) fn wake_dependencies(&mut self, i: usize) {
        let mut todo = self.services[i].deps.clone();
        let mut seen = vec![false; self.services.len()];
        while let Some(d) = todo.pop() {
            if std::mem::replace(&mut seen[d], true) {
                continue;
            }
            if matches!(
                self.services[d].life,
                Life::Exited | Life::Failed | Life::Stopped | Life::Held
            ) {
                self.services[d].restarts = Default::default();
                self.services[d].life = Life::Waiting;
            }
            todo.extend(self.services[d].deps.iter().copied());
        }
    }

    /// `stop`: the service's tree is stopped and the service held down until `start`.
    pub(in crate::up) fn stop_request(
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
        match &self.services[i].life {
            Life::Starting { .. } | Life::Ready { .. } | Life::Diagnosing { .. } => {
                self.stop_service(i, StopCause::Request, Then::Hold, now);
            }
            Life::Stopping { .. } => machine::redirect(&mut self.services[i].life, Then::Hold),
            Life::Waiting | Life::Backoff { .. } | Life::Exited | Life::Failed => {
                if self.shutdown.is_none() {
                    self.services[i].life = Life::Held;
                }
            }
            Life::Stopped | Life::Held | Life::Removed => {}
        }
        if self.services[i].life.stop().is_none() {
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
    pub(in crate::up) fn answer_waiters(&mut self, now: Instant) {
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
                    if svc.life.stopping() {
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
    pub(in crate::up) fn up_answer(&mut self, i: usize, after: u32, now: Instant) -> Option<Reply> {
        let svc = &self.services[i];
        let name = svc.cfg.name.clone();
        if svc.generation > after {
            match svc.life {
                Life::Ready { .. } => return Some(Reply::Service(self.service_status(i, now))),
                Life::Starting { .. } | Life::Stopping { .. } | Life::Diagnosing { .. } => {
                    return None;
                }
                // Stopped again with a dependency: as long as the dependencies may come up.
                Life::Waiting => {}
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
                self.services[d].life,
                Life::Failed | Life::Exited | Life::Held | Life::Removed
            )
        }) {
            let dep = &self.services[d];
            return Some(error(
                ErrorKind::Failed,
                format!(
                    "{name} cannot start: its dependency {} is {}",
                    dep.cfg.name,
                    dep.life.shown().as_str()
                ),
            ));
        }
        if svc.life.down() {
            Some(error(
                ErrorKind::Failed,
                format!("{name} is {} now", svc.life.shown().as_str()),
            ))
        } else {
            None
        }
    }

    /// The shutdown began: nothing will start any more.
    pub(in crate::up) fn fail_waiters_for_shutdown(&mut self) {
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
    pub(in crate::up) async fn answer_down(
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
}
