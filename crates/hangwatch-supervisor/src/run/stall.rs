//! A liveness deadline passed: a warning is recorded and the run goes on; a stall is recorded
//! and its stop begins, unless host pressure defers it (`--stall-defer-under-pressure`, the
//! rules shared with `up` in [`crate::up::machine::stall_due`]).

use hangwatch_diagnose::pressure::Pressure;
use hangwatch_protocol::report::{Degraded, StallRecord, StallSource, StopCause};
use tokio::time::Instant;

use super::{Phase, Run, RunError, millis};
use crate::incident::Additions;
use crate::liveness::detector::{Expiry, Verdict};
use crate::up::machine::{self, Effect, StallCall};

impl Run<'_> {
    /// The liveness timer fired: a deferral may have cleared, a deadline may have passed.
    pub(super) fn liveness_due(&mut self) -> Result<(), RunError> {
        let now = Instant::now();
        // The timer is armed only while the program runs.
        let Phase::Running { deferral, .. } = &mut self.phase else {
            return Ok(());
        };
        if let Some(d) = *deferral {
            let cleared =
                machine::deferral_cleared(deferral, self.detector.stall_deadline(d.source), now);
            say_effects(&cleared);
        }
        let Some((at, expiry)) = self.detector.next_deadline() else {
            return Ok(());
        };
        if at > now || deferral.is_some_and(|d| d.recheck > now && at <= d.deadline) {
            // Armed for an older, earlier deadline: a heartbeat has moved it on.
            return Ok(());
        }
        let Some(verdict) = self.detector.expire(expiry, now) else {
            if let Some(d) = *deferral {
                // The status file, looked at again, shows the heartbeat.
                say_effects(&machine::deferral_cleared(
                    deferral,
                    self.detector.stall_deadline(d.source),
                    now,
                ));
            }
            return Ok(());
        };
        let mut deferred = None;
        if let Expiry::Stall(source) = verdict.expiry
            && let Some(defer) = self.spec.stall_defer
        {
            let pressure = host_pressure(&mut self.said_no_pressure, &mut self.report.notes);
            match machine::stall_due(
                deferral,
                Some(&defer),
                source,
                verdict.deadline,
                pressure,
                now,
            ) {
                StallCall::Wait(effects) => {
                    say_effects(&effects);
                    return Ok(());
                }
                StallCall::Stop { deferred: d } => deferred = d,
            }
        }
        let status = self.notify.as_ref().and_then(|n| n.status.clone());
        let mut record = stall_record(&verdict, self.started, now, status, self.stopper.own_pid);
        record.deferred = deferred;
        match verdict.expiry {
            Expiry::Warn(_) => {
                eprintln!("{}", crate::summary::warning(&record));
                self.report.warnings.push(record);
            }
            Expiry::Stall(source) => {
                tracing::debug!(source = source.as_str(), "stall, stopping the program");
                let additions = Additions {
                    output: self.pump.last_output(),
                    deferred,
                    ..Additions::default()
                };
                self.phase =
                    self.stopper
                        .begin_after_diagnosis(StopCause::Stall, None, additions)?;
                self.report.stall = Some(record);
            }
        }
        Ok(())
    }
}

/// The host's pressure now; `None`, with a note the first time, when the kernel reports none.
fn host_pressure(said: &mut bool, notes: &mut Vec<Degraded>) -> Option<Pressure> {
    match hangwatch_diagnose::pressure::host_now() {
        Ok(pressure) => Some(pressure),
        Err(why) => {
            if !*said {
                *said = true;
                notes.push(Degraded {
                    part: "stall-defer".to_owned(),
                    note: format!(
                        "{why}: the kernel reports no pressure stall information, so \
                         --stall-defer-under-pressure defers nothing"
                    ),
                });
            }
            None
        }
    }
}

/// The record of a passed deadline, with a snapshot of the tree taken now.
fn stall_record(
    verdict: &Verdict,
    started: Instant,
    now: Instant,
    status: Option<String>,
    own_pid: i32,
) -> StallRecord {
    let source = match verdict.expiry {
        Expiry::Warn(source) | Expiry::Stall(source) => source,
    };
    let snapshot = hangwatch_diagnose::snapshot_tree(own_pid).unwrap_or_else(|err| {
        tracing::debug!(%err, "no snapshot");
        Vec::new()
    });
    StallRecord {
        source,
        bound_ms: millis(verdict.bound),
        detected_at_ms: (now - started).as_secs_f64() * 1000.0,
        late_ms: now
            .saturating_duration_since(verdict.deadline)
            .as_secs_f64()
            * 1000.0,
        last_heartbeat_ago_ms: match source {
            StallSource::Trigger | StallSource::Stopping => None,
            _ => verdict
                .last_beat
                .map(|at| now.saturating_duration_since(at).as_secs_f64() * 1000.0),
        },
        status,
        snapshot,
        deferred: None,
    }
}

/// Says on stderr what a deferral of a stall for host pressure did (its `up` events, in the
/// words of `up`'s console).
fn say_effects(effects: &[Effect]) {
    for effect in effects {
        if let Effect::Emit(event) = effect {
            let record = hangwatch_protocol::event::EventRecord {
                at: String::new(),
                service: Some("program".to_owned()),
                event: event.clone(),
            };
            if let Some(text) = crate::up::describe(&record) {
                eprintln!("hangwatch: {text}");
            }
        }
    }
}
