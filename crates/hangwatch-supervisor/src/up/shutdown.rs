//! The order of starts and stops (settling), and the bounded shutdown: stop signals to
//! hangwatch, the shutdown's deadline, and the end of the supervisor.

use std::time::Duration;

use hangwatch_leaks::LeakPolicy;
use hangwatch_process::reap::{has_children, reap_exited};
use hangwatch_process::{ExitStatus, Signal, StopPlan, TreeStop};
use hangwatch_protocol::event::Event;
use hangwatch_protocol::report::StopCause;
use tokio::time::Instant;

use super::machine;
use super::policy::Ending;
use super::service::{millis, ms};
use super::state::{Life, Stop, Then, Tree};
use super::{Shutdown, Supervisor, UpError, UpOutcome, io_err};

impl Supervisor {
    pub(super) fn settle(&mut self, now: Instant) {
        if self.shutdown.is_none() {
            for i in 0..self.services.len() {
                if matches!(self.services[i].life, Life::Waiting)
                    && self.services[i]
                        .deps
                        .iter()
                        .all(|&d| self.services[d].life.is_ready())
                {
                    self.start(i, now);
                }
            }
            // Ends by itself once nothing can change any more; a service held down by
            // `hangwatch stop` may still be started, so it keeps the supervisor up.
            if !self
                .services
                .iter()
                .any(|s| s.life.active() || matches!(s.life, Life::Held))
            {
                let failed = self.services.iter().any(|s| {
                    matches!(s.life, Life::Failed)
                        || s.last_ending
                            .is_some_and(|e| e != Ending::Exited(ExitStatus::Exited(0)))
                });
                self.begin_shutdown("every service ended".to_owned(), i32::from(failed));
            }
            return;
        }
        // Shutting down: a service stops once nothing that depends on it is running.
        for i in 0..self.services.len() {
            if !matches!(
                self.services[i].life,
                Life::Starting { .. } | Life::Ready { .. } | Life::Diagnosing { .. }
            ) {
                continue;
            }
            let dependents_down = self
                .services
                .iter()
                .all(|s| !s.deps.contains(&i) || !s.life.running());
            if dependents_down {
                self.stop_service(i, StopCause::Shutdown, Then::Down, now);
            }
        }
    }

    pub(super) fn begin_shutdown(&mut self, reason: String, exit_code: i32) {
        if self.shutdown.is_some() {
            return;
        }
        let now = Instant::now();
        let timeout = self.config.shutdown_timeout;
        self.emit(
            None,
            Event::ShuttingDown {
                reason: reason.clone(),
                timeout_ms: millis(timeout),
            },
        );
        self.shutdown = Some(Shutdown {
            reason,
            began: now,
            deadline: now + timeout,
            exit_code,
            killing: false,
        });
        self.fail_waiters_for_shutdown();
        for svc in &mut self.services {
            machine::shutdown_begins(&mut svc.life);
        }
    }

    pub(super) fn on_stop_signal(&mut self, name: &str) {
        match &mut self.shutdown {
            None => self.begin_shutdown(format!("{name} received"), 0),
            Some(shutdown) if !shutdown.killing => {
                shutdown.killing = true;
                self.note(&format!("{name} again: killing everything now"));
                if let Err(err) = self.kill_all(Instant::now()) {
                    tracing::warn!(%err, "cannot kill");
                }
            }
            Some(_) => {}
        }
    }

    pub(super) fn finished(&self) -> bool {
        let Some(shutdown) = &self.shutdown else {
            return false;
        };
        let past_bound = Instant::now() >= shutdown.deadline;
        self.services.iter().all(|s| match &s.life {
            // A stop that still cannot be signalled past the shutdown's bound does not hold
            // the shutdown: the final sweep below hangwatch KILLs what is left.
            Life::Stopping {
                stop: Stop {
                    tree: Tree::Due { .. },
                    ..
                },
                ..
            } => past_bound,
            life => !life.running(),
        })
            && self.exec_probes.is_empty()
            // The services' leak audits report before `down`, within the shutdown's bound
            // (what one of them did not report, the final audit does).
            && (self.incidents_due == 0 || past_bound)
            && (self.leak_audits == 0
                || self
                    .shutdown
                    .as_ref()
                    .is_some_and(|s| Instant::now() >= s.deadline))
    }

    pub(super) async fn finish(&mut self) -> Result<UpOutcome, UpError> {
        // Anything still below hangwatch (an escaped probe child): KILL, bounded.
        if has_children().map_err(io_err("look for children"))? {
            let plan = StopPlan {
                signal: Signal::KILL,
                grace: Duration::ZERO,
            };
            if let Ok(mut tree) = TreeStop::begin(plan, self.own_pid, None) {
                let limit = Instant::now() + Duration::from_secs(2);
                while tree.any_alive() && Instant::now() < limit {
                    let _ = tokio::time::timeout_at(limit, tree.exited()).await;
                    let _ = reap_exited();
                    let _ = tree.refresh();
                }
            }
            let _ = reap_exited();
        }
        let shutdown = self.shutdown.take();
        let (reason, exit_code, took) = shutdown.map_or((String::new(), 0, Duration::ZERO), |s| {
            (s.reason, s.exit_code, s.began.elapsed())
        });
        let mut clean = Vec::new();
        let mut killed = Vec::new();
        for svc in &self.services {
            match svc.killed_at_shutdown {
                Some(true) => killed.push(svc.cfg.name.clone()),
                Some(false) => clean.push(svc.cfg.name.clone()),
                None => {}
            }
        }
        let report = self
            .leaks
            .take()
            .map(|leaks| leaks.finish(LeakPolicy::Report, 0))
            .unwrap_or_default();
        if !report.objects.is_empty() {
            self.emit(
                None,
                Event::Leak {
                    leftovers: Vec::new(),
                    objects: report.objects.iter().map(|o| o.name.clone()).collect(),
                },
            );
        }
        self.emit(
            None,
            Event::Down {
                took_ms: ms(took),
                clean: clean.clone(),
                killed: killed.clone(),
                exit_code,
            },
        );
        self.answer_down(&clean, &killed, took, exit_code).await;
        // A clean end: nothing for the next hangwatch to clean up.
        if let Some(file) = self.instance_file.take() {
            let _ = file.close();
        }
        let _ = std::fs::remove_file(self.state.instance_path());
        if let Some(console) = &self.console {
            console.flush(Duration::from_secs(2));
        }
        Ok(UpOutcome {
            exit_code,
            reason,
            clean,
            killed,
            shutdown: took,
        })
    }
}
