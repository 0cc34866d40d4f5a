//! The run's report: begun before the program starts, filled in by the loop, and completed
//! once the tree is gone (the outcome, the stop and its survivors, the leak audit, the notes).

use std::time::{Duration, SystemTime};

use hangwatch_leaks::{LeakPolicy, LeakWatch};
use hangwatch_process::{ExitStatus, Guardian, SpawnError};
use hangwatch_protocol::exit_code;
use hangwatch_protocol::report::{
    Degraded, EndReason, IncidentWhy, Outcome, ProcessInfo, REPORT_VERSION, RunReport, StopCause,
    StopRecord,
};
use tokio::time::Instant;

use super::stop::Survivors;
use super::wake::Sources;
use super::{Phase, Run, RunError, RunOutcome, RunSpec, millis};

/// When the run began: the monotonic instant for durations, the wall clock for the record.
type Began = (Instant, SystemTime);

/// The report of a run that began at `started_wall`, before anything has happened.
pub(super) fn blank(spec: &RunSpec, started_wall: SystemTime) -> RunReport {
    RunReport {
        version: REPORT_VERSION,
        command: spec
            .argv
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect(),
        pid: None,
        started_at: humantime::format_rfc3339_millis(started_wall).to_string(),
        ended_at: String::new(),
        duration_ms: 0.0,
        timeout_ms: spec.timeout.map(millis),
        outcome: Outcome {
            reason: EndReason::Exited,
            exit_code: 0,
            program: None,
            error: None,
            oom: None,
        },
        stop: None,
        stopped: Vec::new(),
        leftovers: Vec::new(),
        stall: None,
        warnings: Vec::new(),
        notify: None,
        incident: None,
        leaks: None,
        notes: Vec::new(),
    }
}

/// The outcome of a program that could not be started: 127 when it was not found, 126 when
/// it could not be executed, 125 otherwise. The guardian is let go: there is nothing to guard.
pub(super) fn failed_to_start(
    mut report: RunReport,
    err: &SpawnError,
    began: Began,
    notes: Vec<Degraded>,
    guardian: Option<Guardian>,
) -> RunOutcome {
    let code = match err {
        SpawnError::NotFound { .. } => exit_code::NOT_FOUND,
        SpawnError::NotExecutable { .. } => exit_code::NOT_EXECUTABLE,
        _ => exit_code::HANGWATCH_FAILED,
    };
    report.outcome = Outcome {
        reason: EndReason::FailedToStart,
        exit_code: code,
        program: None,
        error: Some(err.to_string()),
        oom: None,
    };
    finish_times(&mut report, began);
    report.notes = notes;
    if let Some(guardian) = guardian {
        guardian.disarm(&[]);
    }
    RunOutcome { report }
}

impl Run<'_> {
    /// Once the loop is over: passes on the program's last output, gives the terminal back,
    /// and records how the program ended and the stop, if one was needed. The loop's sources
    /// are handed back so that they live, as the run, until the report is sealed (the notify
    /// socket's file goes with its socket).
    pub(super) async fn conclude(self) -> Result<(RunReport, Sources), RunError> {
        let Run {
            spec,
            sources,
            started,
            mut report,
            mut pump,
            foreground,
            notify,
            detector,
            main,
            mut oom,
            main_status,
            phase,
            ..
        } = self;
        // Whatever the program wrote before it ended still reaches hangwatch's output: first
        // read what the pipes still hold, then let the writers pass it on.
        pump.drain(Duration::from_secs(2)).await;
        let last_output = pump.last_output();
        let output_stats = pump.finish(Duration::from_secs(2));
        if output_stats.bytes_dropped > 0 {
            tracing::warn!(
                dropped = output_stats.bytes_dropped,
                "output dropped: hangwatch's own output could not keep up"
            );
        }
        // The terminal goes back to hangwatch before anything is printed on it.
        drop(foreground);

        let status = main_status.ok_or_else(|| RunError::Io {
            about: "learn the program's exit status",
            source: std::io::Error::other("the program was never reaped"),
        })?;
        report.outcome.program = Some(status.to_record());
        let stopping = match phase {
            Phase::Stopping(stop) => Some(stop),
            Phase::Running { .. } | Phase::Diagnosing(_) => None,
        };
        let (reason, code) = match stopping.as_ref().map(|s| s.cause) {
            Some(StopCause::Timeout) => (EndReason::TimedOut, exit_code::TIMED_OUT),
            Some(StopCause::Stall) => (EndReason::Stalled, exit_code::STALLED),
            Some(StopCause::Request) => (EndReason::StoppedOnRequest, status.shell_code()),
            _ => match status {
                ExitStatus::Exited(code) => (EndReason::Exited, code),
                ExitStatus::Signalled { .. } => (EndReason::Signalled, status.shell_code()),
            },
        };
        report.outcome.reason = reason;
        report.outcome.exit_code = code;
        if reason == EndReason::Signalled {
            report.outcome.oom = oom.check(main, status);
        }
        let mut notify = notify;
        if let Some(summary) = &mut notify {
            summary.watchdog_ms = detector.watchdog().map(millis);
        }
        report.notify = notify.filter(|n| n.datagrams > 0 || n.rejected > 0);

        // A leftovers stop that signalled nothing only waited for cleanup helpers to finish:
        // the program left nothing behind.
        let stopping =
            stopping.filter(|stop| stop.cause != StopCause::Leftovers || stop.tree.signalled_any());
        let Some(stop) = stopping else {
            return Ok((report, sources));
        };
        let took_ms = stop.tree.began().elapsed().as_secs_f64() * 1000.0;
        let began_at_ms = (stop.tree.began() - started).as_secs_f64() * 1000.0;
        let plan = stop.tree.plan();
        let look = match stop.survivors {
            Survivors::Seen(look) => Some(look),
            Survivors::Unseen | Survivors::Looking(_) => None,
        };
        report.stop = Some(StopRecord {
            cause: stop.cause,
            began_at_ms,
            late_ms: stop.late_ms,
            signal: plan.signal.name().to_owned(),
            grace_ms: millis(plan.grace),
            escalated_to_kill: stop.tree.escalated(),
            took_ms,
            survivors_look_ms: look.as_ref().map(|l| l.took.as_secs_f64() * 1000.0),
            survivors_incident: None,
        });
        report.stopped = stop.tree.into_records();
        if let Some(look) = look {
            for process in &mut report.stopped {
                process.survived = look
                    .survivors
                    .iter()
                    .find(|s| s.process.pid == process.process.pid && process.killed)
                    .map(|s| s.survival.clone());
            }
            if let (Some(diagnose), Some(record)) = (&spec.diagnose, report.stop.as_mut()) {
                record.survivors_incident = crate::incident::write_survivors(
                    &diagnose.dir,
                    &look,
                    IncidentWhy::Killed.as_str(),
                    last_output,
                );
            }
        }
        if stop.cause == StopCause::Leftovers {
            report.leftovers = report
                .stopped
                .iter()
                .map(|p| p.process.clone())
                .collect::<Vec<ProcessInfo>>();
        }
        Ok((report, sources))
    }
}

/// Completes the report once everything the program started is gone: its times, the leak
/// audit and the notes; then lets the guardian go.
pub(super) fn seal(
    mut report: RunReport,
    began: Began,
    leaks: LeakWatch,
    policy: LeakPolicy,
    mut notes: Vec<Degraded>,
    guardian: Option<Guardian>,
) -> RunOutcome {
    finish_times(&mut report, began);
    let inotify = leaks.inotify_copy();
    let audit = leaks.finish(policy, report.leftovers.len());
    // What the leak audit could not do (no inotify watch, an unreadable directory) is in its
    // own record too; the notes gather every part that degraded in one place.
    for error in &audit.errors {
        // The same failure at the start and at the end is one note.
        if !notes
            .iter()
            .any(|n| n.part == "leak-audit" && n.note == *error)
        {
            notes.push(Degraded::new("leak-audit", error.clone()));
        }
    }
    report.outcome.exit_code = hangwatch_leaks::exit_code(&audit, report.outcome.exit_code);
    report.leaks = Some(audit);
    // A diagnosis that could not be written (or taken) keeps its verdict in the report; the
    // stop did not wait for it beyond its limit.
    if let Some(error) = report.incident.as_ref().and_then(|i| i.error.as_ref()) {
        notes.push(Degraded::new("incident", error.clone()));
    }
    // The diagnosis's readings that failed as a whole (no pressure, no Python stacks).
    if let Some(incident) = &report.incident {
        notes.extend(incident.degraded.iter().cloned());
    }
    // Notes the loop added (a stall deferral without pressure readings) come after the
    // start's.
    notes.append(&mut report.notes);
    report.notes = notes;
    // Everything the program started is gone: the guardian has nothing to do but close the
    // leak watch's inotify instance after hangwatch is gone (its last close is slow).
    if let Some(guardian) = guardian {
        let handed: Vec<_> = inotify.iter().map(std::os::fd::AsFd::as_fd).collect();
        guardian.disarm(&handed);
    }
    drop(inotify);
    RunOutcome { report }
}

fn finish_times(report: &mut RunReport, (started, started_wall): Began) {
    let elapsed = started.elapsed();
    report.duration_ms = elapsed.as_secs_f64() * 1000.0;
    report.ended_at = humantime::format_rfc3339_millis(started_wall + elapsed).to_string();
}
