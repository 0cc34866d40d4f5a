//! The one-line human summary of a run, printed to stderr when hangwatch had to intervene.

use hangwatch_protocol::report::{
    Attribution, EndReason, LeakAction, LeakedObject, RunReport, StallRecord, StallSource,
    StopCause, StopRecord, StoppedProcess, Survivor,
};

/// The summary line, or `None` when the program simply exited, hangwatch did nothing and
/// nothing was left behind.
pub(crate) fn summarize(report: &RunReport) -> Option<String> {
    let code = report.outcome.exit_code;
    if report.outcome.reason == EndReason::FailedToStart {
        let error = report.outcome.error.as_deref().unwrap_or("unknown error");
        return Some(format!("hangwatch: {error} (exit {code})"));
    }
    let leaks = leak_parts(report);
    let mut parts = match &report.stop {
        Some(stop) => stop_parts(report, stop),
        // A KILL from outside: who sent it, as far as the kernel log tells.
        None if report.outcome.oom.is_some() => {
            vec![format!("the program was {}", program_status(report))]
        }
        None if !leaks.is_empty() => {
            vec![format!("the program exited ({})", program_status(report))]
        }
        None => return None,
    };
    parts.extend(leaks);
    let mut text = format!("hangwatch: {} (exit {code})", parts.join("; "));
    if let Some(incident) = &report.incident {
        // The verdict and where the evidence is, on lines of their own: they are long.
        if let Some(first) = incident.verdict.first() {
            text.push_str(&format!("\nhangwatch: diagnosis: {first}"));
            if incident.verdict.len() > 1 {
                text.push_str(&format!(" (+{} more)", incident.verdict.len() - 1));
            }
        }
        if let Some(path) = &incident.text_path {
            text.push_str(&format!("\nhangwatch: incident: {path}"));
        }
        if let Some(error) = &incident.error {
            text.push_str(&format!("\nhangwatch: incident: {error}"));
        }
    }
    if let Some(path) = report
        .stop
        .as_ref()
        .and_then(|s| s.survivors_incident.as_ref())
        .and_then(|i| i.text_path.as_ref())
    {
        text.push_str(&format!("\nhangwatch: why KILL was needed: {path}"));
    }
    Some(text)
}

/// What the stop did: why it began, who ended on the stop signal, who needed `KILL`.
fn stop_parts(report: &RunReport, stop: &StopRecord) -> Vec<String> {
    let head = match stop.cause {
        StopCause::Timeout => {
            let mut text = format!(
                "timed out after {}",
                seconds(report.timeout_ms.unwrap_or_default())
            );
            // What the program last said it was doing (the test a suite was in), as for a stall.
            if let Some(status) = report.notify.as_ref().and_then(|n| n.status.as_ref()) {
                text.push_str(&format!(" (last STATUS: {status})"));
            }
            text
        }
        StopCause::Request => "stopped on request".to_owned(),
        StopCause::Leftovers => format!(
            "the program exited ({}) but left {} behind",
            program_status(report),
            processes(report.leftovers.len())
        ),
        StopCause::Stall => match &report.stall {
            Some(stall) => format!("stalled: {}", describe_stall(stall)),
            None => "stalled".to_owned(),
        },
        _ => "stopped".to_owned(),
    };
    let (killed, polite): (Vec<&StoppedProcess>, Vec<&StoppedProcess>) =
        report.stopped.iter().partition(|p| p.killed);
    let mut parts = vec![head];
    if !polite.is_empty() {
        parts.push(format!(
            "{} ended on {}: {}",
            processes(polite.len()),
            stop.signal,
            list(&polite)
        ));
    }
    // Those whose survival was looked at are named with why, the rest listed.
    let (explained, unexplained): (Vec<&StoppedProcess>, Vec<&StoppedProcess>) =
        killed.iter().partition(|p| p.survived.is_some());
    for process in explained.iter().take(3) {
        if let Some(survival) = &process.survived {
            let survivor = Survivor {
                process: process.process.clone(),
                survival: survival.clone(),
            };
            parts.push(format!(
                "{}; KILL after the {} grace",
                crate::survivors::sentence(&survivor),
                seconds(stop.grace_ms)
            ));
        }
    }
    let unexplained: Vec<&StoppedProcess> = explained
        .iter()
        .skip(3)
        .chain(unexplained.iter())
        .copied()
        .collect();
    if !unexplained.is_empty() {
        parts.push(format!(
            "{} killed with KILL after the {} grace: {}",
            processes(unexplained.len()),
            seconds(stop.grace_ms),
            list(&unexplained)
        ));
    }
    parts
}

/// What the leak audit found: objects attributable to the program (and what became of them),
/// then those only suspected.
fn leak_parts(report: &RunReport) -> Vec<String> {
    let Some(leaks) = &report.leaks else {
        return Vec::new();
    };
    let (attributable, suspected): (Vec<&LeakedObject>, Vec<&LeakedObject>) = leaks
        .objects
        .iter()
        .partition(|o| o.attribution == Attribution::Attributable);
    let mut parts = Vec::new();
    if !attributable.is_empty() {
        let removed = attributable
            .iter()
            .filter(|o| matches!(o.action, LeakAction::Removed | LeakAction::AlreadyGone))
            .count();
        let failed = attributable
            .iter()
            .filter(|o| o.action == LeakAction::RemoveFailed)
            .count();
        let fate = match (removed, failed) {
            (0, 0) => String::new(),
            (r, 0) if r == attributable.len() => ", removed".to_owned(),
            (r, 0) => format!(", {r} removed"),
            (r, f) => format!(", {r} removed, {f} could not be"),
        };
        parts.push(format!(
            "left {} behind{fate}: {}",
            objects(attributable.len()),
            list_objects(&attributable)
        ));
    }
    if !suspected.is_empty() {
        parts.push(format!(
            "{} may be its leak, left in place: {}",
            objects(suspected.len()),
            list_objects(&suspected)
        ));
    }
    parts
}

fn objects(n: usize) -> String {
    if n == 1 {
        "1 object".to_owned()
    } else {
        format!("{n} objects")
    }
}

/// Up to three objects as `NAME (SIZE, by PID COMMAND)`, then a count of the rest.
fn list_objects(found: &[&LeakedObject]) -> String {
    let mut names: Vec<String> = found
        .iter()
        .take(3)
        .map(|o| {
            let mut about = Vec::new();
            if let Some(size) = o.size {
                about.push(bytes(size));
            }
            if let Some(process) = &o.process {
                about.push(format!("by {} {}", process.pid, short(&process.command)));
            }
            if about.is_empty() {
                o.name.clone()
            } else {
                format!("{} ({})", o.name, about.join(", "))
            }
        })
        .collect();
    if found.len() > 3 {
        names.push(format!("{} more", found.len() - 3));
    }
    names.join(", ")
}

/// `512 B`, `4 KiB`, `1.5 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() < 0.05 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The line printed when a soft bound (`--stall-warn`) passes.
pub(crate) fn warning(record: &StallRecord) -> String {
    format!(
        "hangwatch: warning: {}; still running, stopped at the hard bound",
        describe_stall(record)
    )
}

/// Which heartbeat stopped and for how long, in words (the run's summary and the supervisor's
/// console).
pub(crate) fn stall_words(source: StallSource, bound_ms: u64) -> String {
    let bound = seconds(bound_ms);
    match source {
        StallSource::Notify => format!("no WATCHDOG=1 for {bound}"),
        StallSource::File => format!("status file not modified for {bound}"),
        StallSource::Output => format!("no output for {bound}"),
        StallSource::Trigger => "the program sent WATCHDOG=trigger".to_owned(),
        StallSource::Stopping => format!("STOPPING=1 but no exit within {bound}"),
        StallSource::Probe => "its liveness probe failed".to_owned(),
        _ => "stalled".to_owned(),
    }
}

/// The sign of life a heartbeat source waits for, in words.
pub(crate) fn beat_word(source: StallSource) -> &'static str {
    match source {
        StallSource::Notify => "WATCHDOG=1",
        StallSource::File => "a status file change",
        StallSource::Output => "output",
        _ => "a sign of life",
    }
}

/// What the stall was, in words: which heartbeat stopped and for how long.
fn describe_stall(stall: &StallRecord) -> String {
    let mut text = stall_words(stall.source, stall.bound_ms);
    if let Some(status) = &stall.status {
        text.push_str(&format!(" (last STATUS: {status})"));
    }
    if let Some(deferred) = &stall.deferred {
        text.push_str(&format!(
            "; {}",
            crate::incident::deferred_sentence(deferred)
        ));
    }
    let asleep: Vec<String> = stall
        .snapshot
        .iter()
        .flat_map(|p| p.threads.iter())
        .filter(|t| t.state != "R")
        .take(3)
        .map(|t| match &t.wchan {
            Some(wchan) => format!("{} {} in {wchan}", t.name, t.state),
            None => format!("{} {}", t.name, t.state),
        })
        .collect();
    if !asleep.is_empty() {
        text.push_str(&format!("; threads: {}", asleep.join(", ")));
    }
    text
}

fn program_status(report: &RunReport) -> String {
    if let Some(oom) = &report.outcome.oom {
        return crate::oom::words(oom);
    }
    match &report.outcome.program {
        Some(hangwatch_protocol::report::ProgramStatus::Exited { code }) => {
            format!("status {code}")
        }
        Some(hangwatch_protocol::report::ProgramStatus::Signalled { name, .. }) => {
            format!("killed by {name}")
        }
        _ => "unknown status".to_owned(),
    }
}

fn processes(n: usize) -> String {
    if n == 1 {
        "1 process".to_owned()
    } else {
        format!("{n} processes")
    }
}

fn seconds(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

/// Up to three processes as `PID (command)`, then a count of the rest.
fn list(stopped: &[&StoppedProcess]) -> String {
    let mut names: Vec<String> = stopped
        .iter()
        .take(3)
        .map(|p| {
            let escaped = if p.escaped_group {
                ", escaped its group"
            } else {
                ""
            };
            format!("{} ({}{escaped})", p.process.pid, short(&p.process.command))
        })
        .collect();
    if stopped.len() > 3 {
        names.push(format!("{} more", stopped.len() - 3));
    }
    names.join(", ")
}

/// The command with the program's directory dropped and the whole cut to a readable length.
fn short(command: &str) -> String {
    const MAX: usize = 48;
    let (program, args) = command.split_once(' ').unwrap_or((command, ""));
    let program = program.rsplit('/').next().unwrap_or(program);
    let text = if args.is_empty() {
        program.to_owned()
    } else {
        format!("{program} {args}")
    };
    if text.chars().count() <= MAX {
        text
    } else {
        let cut: String = text.chars().take(MAX - 1).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangwatch_protocol::report::{
        LeakKind, LeakPolicy, LeakReport, Outcome, ProcessInfo, ProgramStatus,
    };

    fn exited_with(objects: Vec<LeakedObject>) -> RunReport {
        RunReport {
            version: 1,
            command: vec!["python3".into(), "job.py".into()],
            pid: Some(42),
            started_at: String::new(),
            ended_at: String::new(),
            duration_ms: 1.0,
            timeout_ms: None,
            outcome: Outcome {
                reason: EndReason::Exited,
                exit_code: 0,
                program: Some(ProgramStatus::Exited { code: 0 }),
                error: None,
                oom: None,
            },
            stop: None,
            stopped: vec![],
            leftovers: vec![],
            stall: None,
            warnings: vec![],
            notify: None,
            incident: None,
            leaks: Some(LeakReport {
                policy: LeakPolicy::Clean,
                leaked: true,
                objects,
                ..LeakReport::default()
            }),
            notes: vec![],
        }
    }

    fn object(name: &str, attribution: Attribution, action: LeakAction) -> LeakedObject {
        LeakedObject {
            kind: LeakKind::PosixSharedMemory,
            name: name.into(),
            size: Some(1024 * 1024),
            owner_uid: 1000,
            owner: None,
            attribution,
            evidence: String::new(),
            process: Some(ProcessInfo {
                pid: 43,
                start_time: 1,
                ppid: 42,
                pgid: 42,
                command: "/usr/bin/python3 job.py".into(),
            }),
            action,
            error: None,
        }
    }

    #[test]
    fn a_clean_exit_says_nothing() {
        assert_eq!(summarize(&exited_with(vec![])), None);
    }

    #[test]
    fn leaked_objects_are_named_with_size_holder_and_fate() {
        let line = summarize(&exited_with(vec![
            object(
                "/dev/shm/psm_a",
                Attribution::Attributable,
                LeakAction::Removed,
            ),
            object("/dev/shm/x", Attribution::Suspected, LeakAction::Reported),
        ]))
        .expect("a line");
        assert_eq!(
            line,
            "hangwatch: the program exited (status 0); left 1 object behind, removed: \
             /dev/shm/psm_a (1 MiB, by 43 python3 job.py); 1 object may be its leak, left in \
             place: /dev/shm/x (1 MiB, by 43 python3 job.py) (exit 0)"
        );
    }

    #[test]
    fn a_timeout_names_what_the_program_last_said_it_was_doing() {
        let mut report = exited_with(vec![]);
        report.leaks = None;
        report.timeout_ms = Some(2000);
        report.outcome.reason = EndReason::TimedOut;
        report.outcome.exit_code = 124;
        report.stop = Some(StopRecord {
            cause: StopCause::Timeout,
            began_at_ms: 2000.0,
            late_ms: Some(0.1),
            signal: "TERM".into(),
            grace_ms: 10_000,
            escalated_to_kill: false,
            took_ms: 5.0,
            survivors_look_ms: None,
            survivors_incident: None,
        });
        report.notify = Some(hangwatch_protocol::report::NotifySummary {
            status: Some("tests/test_db.py::test_migrate".into()),
            ..Default::default()
        });
        let line = summarize(&report).expect("a line");
        assert!(
            line.starts_with(
                "hangwatch: timed out after 2s (last STATUS: tests/test_db.py::test_migrate)"
            ),
            "{line}"
        );
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(32), "32 B");
        assert_eq!(bytes(4096), "4 KiB");
        assert_eq!(bytes(1536 * 1024), "1.5 MiB");
    }

    #[test]
    fn commands_lose_their_directory_and_stay_short() {
        assert_eq!(short("/usr/bin/python3 job.py"), "python3 job.py");
        assert_eq!(short("sleep"), "sleep");
        let long = format!("/x/prog {}", "a".repeat(100));
        assert_eq!(short(&long).chars().count(), 48);
    }
}
