//! How a run's stop begins and ends: the diagnosis that may precede it, the [`TreeStop`] ladder
//! (signal, grace, `KILL`), the look at the processes that outlive the grace, and the signals
//! hangwatch receives meanwhile.

use hangwatch_leaks::LeakWatch;
use hangwatch_process::{Signal, TreeStop};
use hangwatch_protocol::report::{IncidentRecord, IncidentWhy, StopCause};

use super::wake::{Diagnosis, Looking};
use super::{Phase, Run, RunError, RunSpec, forward, io};
use crate::incident::{Additions, Subject};
use crate::survivors::Look;

/// What every stop of a run needs, and the one place that begins them.
pub(super) struct Stopper<'a> {
    pub(super) spec: &'a RunSpec,
    pub(super) leaks: &'a LeakWatch,
    /// hangwatch's own PID, the root of every process it stops.
    pub(super) own_pid: i32,
    /// The program's PID.
    pub(super) program: i32,
    /// The program's process group.
    pub(super) pgid: i32,
}

/// A diagnosis under way, and the stop that waits for it.
pub(super) struct Diagnosing {
    pub(super) cause: StopCause,
    pub(super) late_ms: Option<f64>,
    pub(super) task: Diagnosis,
}

/// A stop in progress and why it began.
pub(super) struct Stopping {
    pub(super) cause: StopCause,
    pub(super) tree: TreeStop,
    pub(super) late_ms: Option<f64>,
    /// The look at the processes that outlive the grace, before their `KILL`
    /// ([`crate::survivors`]).
    pub(super) survivors: Survivors,
}

/// Where the look at a stop's survivors is.
pub(super) enum Survivors {
    /// Not looked at: the grace has not run out, nothing survived it, or a request sent `KILL`
    /// first.
    Unseen,
    /// Being looked at; the grace timer waits, and `KILL` follows the look.
    Looking(Looking),
    /// Seen, and killed.
    Seen(Look),
}

impl Stopper<'_> {
    /// Begins stopping the program's whole tree (see [`TreeStop`]), after a last look at what
    /// it holds.
    pub(super) fn begin(
        &self,
        cause: StopCause,
        late_ms: Option<f64>,
    ) -> Result<Stopping, RunError> {
        self.leaks.observe();
        let tree = TreeStop::begin(self.spec.stop, self.own_pid, Some(self.pgid))
            .map_err(io("stop the program"))?;
        Ok(Stopping {
            cause,
            tree,
            late_ms,
            survivors: Survivors::Unseen,
        })
    }

    /// For a stall or timeout: the diagnosis that precedes the stop when one is asked for (its
    /// end begins the stop), else the stop, begun now.
    pub(super) fn begin_after_diagnosis(
        &self,
        cause: StopCause,
        late_ms: Option<f64>,
        additions: Additions,
    ) -> Result<Phase, RunError> {
        let Some(diagnose) = self.spec.diagnose.clone() else {
            return Ok(Phase::Stopping(self.begin(cause, late_ms)?));
        };
        let subject = Subject::Descendants {
            own_pid: self.own_pid,
            program: self.program,
        };
        let reason = IncidentWhy::before_stop(cause).as_str().to_owned();
        Ok(Phase::Diagnosing(Diagnosing {
            cause,
            late_ms,
            task: Box::pin(crate::incident::bounded(
                diagnose, subject, reason, additions,
            )),
        }))
    }
}

impl Run<'_> {
    /// The `--timeout` deadline passed.
    pub(super) fn timed_out(&mut self) -> Result<(), RunError> {
        let late_ms = self.deadline.map(|d| d.elapsed().as_secs_f64() * 1000.0);
        tracing::debug!(?late_ms, "timeout reached, stopping the program");
        let additions = Additions {
            output: self.pump.last_output(),
            ..Additions::default()
        };
        self.phase = self
            .stopper
            .begin_after_diagnosis(StopCause::Timeout, late_ms, additions)?;
        Ok(())
    }

    /// The diagnosis before a stop is done: the stop begins.
    pub(super) fn diagnosed(&mut self, record: IncidentRecord) -> Result<(), RunError> {
        if let Phase::Diagnosing(done) = &self.phase {
            let (cause, late_ms) = (done.cause, done.late_ms);
            tracing::debug!(took_ms = record.took_ms, "diagnosis done, stopping");
            self.report.incident = Some(record);
            self.phase = Phase::Stopping(self.stopper.begin(cause, late_ms)?);
        }
        Ok(())
    }

    /// The grace ran out: look at the survivors first when there are any (why they are still
    /// alive, before the `KILL` destroys the answer), else `KILL` now.
    pub(super) fn grace_over(&mut self) -> Result<(), RunError> {
        let Phase::Stopping(stop) = &mut self.phase else {
            return Ok(());
        };
        let survivors = stop.tree.survivors();
        if !matches!(stop.survivors, Survivors::Seen(_))
            && !stop.tree.escalated()
            && !survivors.is_empty()
        {
            tracing::debug!("grace over, looking at the survivors");
            let python = self.spec.diagnose.as_ref().is_none_or(|d| d.python);
            stop.survivors = Survivors::Looking(Box::pin(crate::survivors::look(
                survivors,
                stop.tree.plan().signal,
                python,
            )));
        } else {
            tracing::debug!("grace over, sending KILL");
            stop.tree.kill_now().map_err(io("kill the process tree"))?;
        }
        Ok(())
    }

    /// The look at the survivors is done: `KILL` them.
    pub(super) fn survivors_seen(&mut self, look: Look) -> Result<(), RunError> {
        if let Phase::Stopping(stop) = &mut self.phase {
            tracing::debug!(took = ?look.took, "survivors seen, sending KILL");
            stop.survivors = Survivors::Seen(look);
            stop.tree.kill_now().map_err(io("kill the process tree"))?;
        }
        Ok(())
    }

    /// hangwatch received `sig`. `INT`/`TERM` skip a diagnosis under way, `KILL` a stop in its
    /// grace at once, and, the second time while the program runs, begin a stop; every other
    /// signal, and the first `INT`/`TERM`, is forwarded to the program while it lives.
    pub(super) fn signalled(&mut self, sig: Signal) -> Result<(), RunError> {
        let terminating = sig == Signal::TERMINATE || sig == Signal::INTERRUPT;
        if sig == Signal(hangwatch_process::signal::RawSignal::SIGWINCH) {
            self.pump.resize();
        }
        match &mut self.phase {
            Phase::Diagnosing(skipped) if terminating => {
                // Asked to stop while diagnosing: the stop will not wait for it.
                let (cause, late_ms) = (skipped.cause, skipped.late_ms);
                tracing::debug!(%sig, "asked during the diagnosis: stopping now");
                self.report.incident = Some(IncidentRecord {
                    error: Some(format!("skipped: {sig} arrived during the diagnosis")),
                    ..IncidentRecord::default()
                });
                self.phase = Phase::Stopping(self.stopper.begin(cause, late_ms)?);
            }
            Phase::Stopping(stop) => {
                if terminating && stop.tree.grace_deadline().is_some() {
                    tracing::debug!(%sig, "asked again during a stop: KILL now");
                    if let Survivors::Looking(_) = stop.survivors {
                        stop.survivors = Survivors::Unseen;
                    }
                    stop.tree.kill_now().map_err(io("kill the process tree"))?;
                }
            }
            Phase::Diagnosing(_) => {
                if self.main_status.is_none() {
                    forward(sig, self.stopper.pgid);
                }
            }
            Phase::Running { stop_requests, .. } => {
                if self.main_status.is_none() {
                    if terminating {
                        *stop_requests += 1;
                    }
                    if terminating && *stop_requests >= 2 {
                        tracing::debug!(%sig, "asked twice: stopping the program");
                        self.phase = Phase::Stopping(self.stopper.begin(StopCause::Request, None)?);
                    } else {
                        forward(sig, self.stopper.pgid);
                    }
                }
            }
        }
        Ok(())
    }
}
