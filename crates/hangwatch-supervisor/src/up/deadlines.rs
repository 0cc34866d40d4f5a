//! The one timer of the loop: armed at the earliest deadline of any service (a backoff ending,
//! a probe due, a liveness deadline, a stop's grace or retry, the shutdown bound), and what is
//! done when it fires.

use std::time::Duration;

use hangwatch_config::Readiness;
use hangwatch_process::Signal;
use hangwatch_protocol::event::Event;
use hangwatch_protocol::report::StopCause;
use tokio::time::Instant;

use super::lifecycle::kill_at_once;
use super::machine;
use super::policy::Ending;
use super::service::{millis, ms};
use super::state::{Life, Look, Then, Tree};
use super::{Supervisor, UpError, io_err};
use crate::liveness::detector::Expiry;

impl Supervisor {
    /// The earliest instant at which anything is due.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for svc in &self.services {
            match &svc.life {
                Life::Backoff { until } if self.shutdown.is_none() => at(*until),
                Life::Starting {
                    ready_probe: Some(clock),
                    ..
                } => {
                    if !clock.in_flight {
                        at(clock.next);
                    }
                    if let Some(give_up) = clock.give_up {
                        at(give_up);
                    }
                }
                Life::Stopping { stop, .. } => match &stop.tree {
                    Tree::Due { at: due } => at(*due),
                    Tree::Signalled(tree) => match stop.look {
                        Look::Looking { until } => at(until),
                        _ => {
                            if let Some(grace) = tree.grace_deadline() {
                                at(grace);
                            }
                        }
                    },
                },
                _ => {}
            }
            if let Some(watch) = svc.life.watch() {
                if let Some(clock) = &watch.live_probe
                    && !clock.in_flight
                {
                    at(clock.next);
                }
                if let Some((deadline, _)) = watch.detector.as_ref().and_then(|d| d.next_deadline())
                {
                    // A deferred stall's deadline has passed: its recheck is next.
                    match watch.deferral {
                        Some(deferral) if deadline <= deferral.deadline => at(deferral.recheck),
                        _ => at(deadline),
                    }
                }
                // The diagnosis that anticipates the next stall begins a window before it
                // (not while a stall waits out pressure: its deadline has passed).
                if svc.cfg.diagnose
                    && self.shutdown.is_none()
                    && watch.deferral.is_none()
                    && let Some((begin, deadline)) = watch
                        .detector
                        .as_ref()
                        .and_then(|d| d.anticipate(self.diagnose.sample))
                    && watch.early.as_ref().is_none_or(|e| e.target != deadline)
                {
                    at(begin);
                }
                if let Some(check) = watch.memory_check {
                    at(check);
                }
            }
        }
        for probe in self.exec_probes.values() {
            at(probe.deadline);
        }
        if let Some(shutdown) = &self.shutdown
            && !shutdown.killing
        {
            at(shutdown.deadline);
        }
        next
    }

    /// Acts on every deadline that has passed.
    pub(super) fn on_deadlines(&mut self, now: Instant) -> Result<(), UpError> {
        if let Some(shutdown) = &mut self.shutdown
            && !shutdown.killing
            && now >= shutdown.deadline
        {
            shutdown.killing = true;
            self.kill_all(now)?;
        }
        let overdue: Vec<i32> = self
            .exec_probes
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in overdue {
            if let Some(probe) = self.exec_probes.get_mut(&pid) {
                // Killed now; its exit is reaped and reported then, as a failure.
                let _ = hangwatch_process::signal::signal_group(probe.pgid, Signal::KILL);
                probe.deadline = now + Duration::from_secs(3600);
            }
        }
        for i in 0..self.services.len() {
            self.service_deadlines(i, now)?;
        }
        Ok(())
    }

    fn service_deadlines(&mut self, i: usize, now: Instant) -> Result<(), UpError> {
        match &self.services[i].life {
            Life::Backoff { until } if *until <= now && self.shutdown.is_none() => {
                // Started by the next settle, once its dependencies are ready.
                self.services[i].life = Life::Waiting;
                return Ok(());
            }
            Life::Stopping { stop, .. } => {
                match &stop.tree {
                    Tree::Due { at } if *at <= now => self.signal_tree(i, now),
                    Tree::Signalled(tree) if tree.grace_deadline().is_some_and(|g| g <= now) => {
                        match stop.look {
                            Look::Looking { until } if until > now => return Ok(()),
                            Look::Looking { until } => {
                                // The look did not come back in time (its message waits
                                // behind others on a busy loop): the `KILL` is said all the
                                // same, without the look, and the late look is dropped.
                                let (survivors, signal) = (tree.survivors(), tree.plan().signal);
                                self.killing_unlooked(i, survivors, signal, until, now);
                            }
                            Look::NotYet if !tree.escalated() => {
                                let survivors = tree.survivors();
                                if !survivors.is_empty() {
                                    self.look_at_survivors(i, survivors, now);
                                    return Ok(());
                                }
                            }
                            _ => {}
                        }
                        self.kill_survivors(i)?;
                    }
                    _ => {}
                }
                return Ok(());
            }
            _ => {}
        }
        self.readiness_deadline(i, now);
        self.liveness_deadlines(i, now)
    }

    /// The grace of service `i`'s stop ran out, and its survivors were seen (or the look was
    /// skipped or ran out of time): `KILL`.
    pub(super) fn kill_survivors(&mut self, i: usize) -> Result<(), UpError> {
        if let Some(stop) = self.services[i].life.stop_mut() {
            stop.look = Look::Done;
        }
        // One scan serves every stop whose grace ends in this wake-up.
        self.table()?;
        if let (Some(tree), Some(table)) = (self.services[i].life.tree_mut(), &self.table) {
            tree.kill_now_in(table).map_err(io_err("kill a service"))?;
        }
        self.rescan = true;
        Ok(())
    }

    /// The readiness probe: give up past its bound, or launch the next attempt.
    fn readiness_deadline(&mut self, i: usize, now: Instant) {
        let svc = &mut self.services[i];
        let Life::Starting {
            ready_probe: Some(clock),
            ..
        } = &mut svc.life
        else {
            return;
        };
        if clock.give_up.is_some_and(|g| g <= now) {
            let within_ms = match &svc.cfg.ready {
                Readiness::Probe(p) => millis(p.within),
                _ => 0,
            };
            let error = svc
                .last_probe_error
                .clone()
                .unwrap_or_else(|| "no answer yet".to_owned());
            self.emit(Some(i), Event::NotReady { within_ms, error });
            self.stop_service(
                i,
                StopCause::NotReady,
                Then::Decide(Ending::StartFailed),
                now,
            );
            return;
        }
        if !clock.in_flight && clock.next <= now {
            self.launch_probe(i, true, now);
        }
    }

    /// The liveness probe, the memory sample, and the heartbeat deadlines.
    fn liveness_deadlines(&mut self, i: usize, now: Instant) -> Result<(), UpError> {
        if let Some(clock) = self.services[i]
            .life
            .watch()
            .and_then(|w| w.live_probe.as_ref())
            && !clock.in_flight
            && clock.next <= now
        {
            self.launch_probe(i, false, now);
        }
        self.check_memory(i, now)?;
        self.anticipate_stall(i, now);
        let svc = &mut self.services[i];
        let Some(watch) = svc.life.watch_mut() else {
            return Ok(());
        };
        let Some(detector) = watch.detector.as_mut() else {
            return Ok(());
        };
        // A heartbeat during a deferral clears the stall.
        let cleared = watch.deferral.map_or_else(Vec::new, |d| {
            machine::deferral_cleared(&mut watch.deferral, detector.stall_deadline(d.source), now)
        });
        let deferring = watch.deferral;
        let Some((deadline, expiry)) = detector.next_deadline() else {
            self.perform(i, cleared, now);
            return Ok(());
        };
        if deadline > now || deferring.is_some_and(|d| d.recheck > now && deadline <= d.deadline) {
            self.perform(i, cleared, now);
            return Ok(());
        }
        let verdict = detector.expire(expiry, now);
        // A status file looked at again may show the heartbeat that clears a deferral.
        if verdict.is_none()
            && let Some(d) = watch.deferral
        {
            let more = machine::deferral_cleared(
                &mut watch.deferral,
                detector.stall_deadline(d.source),
                now,
            );
            self.perform(i, more, now);
        }
        self.perform(i, cleared, now);
        let Some(verdict) = verdict else {
            return Ok(());
        };
        if let Expiry::Warn(source) = verdict.expiry {
            self.emit(
                Some(i),
                Event::StallWarning {
                    source,
                    bound_ms: millis(verdict.bound),
                    late_ms: ms(now.saturating_duration_since(verdict.deadline)),
                },
            );
            self.warn_of_stall(i);
        }
        if let Expiry::Stall(source) = verdict.expiry {
            let deferred = match self.defer_stall(i, source, verdict.deadline, now) {
                machine::StallCall::Wait(effects) => {
                    self.perform(i, effects, now);
                    return Ok(());
                }
                machine::StallCall::Stop { deferred } => deferred,
            };
            self.services[i].stall_deferred = deferred;
            let detail = [
                self.services[i]
                    .status_text()
                    .map(|s| format!("last STATUS: {s}")),
                deferred.map(|d| crate::incident::deferred_sentence(&d)),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
            let detail = (!detail.is_empty()).then(|| detail.join("; "));
            self.emit(
                Some(i),
                Event::Stalled {
                    source,
                    bound_ms: millis(verdict.bound),
                    late_ms: ms(now.saturating_duration_since(verdict.deadline)),
                    detail,
                },
            );
            self.on_stall(i, StopCause::Stall, now);
        }
        Ok(())
    }

    /// Service `i`'s stall deadline of `source` passed: whether its stop waits out host
    /// pressure ([`machine::stall_due`]). Where the kernel reports no pressure, the option
    /// does nothing, and a `degraded` event says so once.
    fn defer_stall(
        &mut self,
        i: usize,
        source: hangwatch_protocol::report::StallSource,
        deadline: Instant,
        now: Instant,
    ) -> machine::StallCall {
        let defer = self.services[i].cfg.liveness.stall_defer;
        let pressure = match defer {
            Some(_) => match hangwatch_diagnose::pressure::host_now() {
                Ok(pressure) => Some(pressure),
                Err(why) => {
                    if !self.said_no_pressure {
                        self.said_no_pressure = true;
                        self.emit(
                            None,
                            Event::Degraded {
                                part: "stall-defer".to_owned(),
                                note: format!(
                                    "{why}: the kernel reports no pressure stall information, \
                                     so `stall_defer_under_pressure` defers nothing"
                                ),
                            },
                        );
                    }
                    None
                }
            },
            None => None,
        };
        let Some(watch) = self.services[i].life.watch_mut() else {
            return machine::StallCall::Stop { deferred: None };
        };
        machine::stall_due(
            &mut watch.deferral,
            defer.as_ref(),
            source,
            deadline,
            pressure,
            now,
        )
    }

    /// The shutdown bound passed (or a second signal): KILL every tree, and stop the rest at
    /// once.
    pub(super) fn kill_all(&mut self, now: Instant) -> Result<(), UpError> {
        self.table()?;
        if let Some(table) = &self.table {
            for svc in &mut self.services {
                if let Some(tree) = svc.life.tree_mut() {
                    kill_at_once(tree, table)?;
                }
            }
        }
        // The rest begin their stop now (and a stop still due is tried now): signalling kills
        // at once while `killing`.
        for i in 0..self.services.len() {
            if matches!(
                self.services[i].life.stop().map(|s| &s.tree),
                Some(Tree::Due { .. })
            ) {
                self.signal_tree(i, now);
            }
            self.stop_service(i, StopCause::Shutdown, Then::Down, now);
        }
        self.rescan = true;
        Ok(())
    }
}
