//! The one-line human summary of a run, printed to stderr when hangwatch had to intervene.

use hangwatch_protocol::report::{
    EndReason, RunReport, StallRecord, StallSource, StopCause, StoppedProcess,
};

/// The summary line, or `None` when the program simply exited and hangwatch did nothing.
pub(crate) fn summarize(report: &RunReport) -> Option<String> {
    let code = report.outcome.exit_code;
    if report.outcome.reason == EndReason::FailedToStart {
        let error = report.outcome.error.as_deref().unwrap_or("unknown error");
        return Some(format!("hangwatch: {error} (exit {code})"));
    }
    let stop = report.stop.as_ref()?;
    let head = match stop.cause {
        StopCause::Timeout => format!(
            "timed out after {}",
            seconds(report.timeout_ms.unwrap_or_default())
        ),
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
    if !killed.is_empty() {
        parts.push(format!(
            "{} killed with KILL after the {} grace: {}",
            processes(killed.len()),
            seconds(stop.grace_ms),
            list(&killed)
        ));
    }
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
    Some(text)
}

/// The line printed when a soft bound (`--stall-warn`) passes.
pub(crate) fn warning(record: &StallRecord) -> String {
    format!(
        "hangwatch: warning: {}; still running, stopped at the hard bound",
        describe_stall(record)
    )
}

/// What the stall was, in words: which heartbeat stopped and for how long.
fn describe_stall(stall: &StallRecord) -> String {
    let bound = seconds(stall.bound_ms);
    let mut text = match stall.source {
        StallSource::Notify => format!("no WATCHDOG=1 for {bound}"),
        StallSource::File => format!("status file not modified for {bound}"),
        StallSource::Output => format!("no output for {bound}"),
        StallSource::Trigger => "the program sent WATCHDOG=trigger".to_owned(),
        StallSource::Stopping => format!("STOPPING=1 but no exit within {bound}"),
        _ => "stalled".to_owned(),
    };
    if let Some(status) = &stall.status {
        text.push_str(&format!(" (last STATUS: {status})"));
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

    #[test]
    fn commands_lose_their_directory_and_stay_short() {
        assert_eq!(short("/usr/bin/python3 job.py"), "python3 job.py");
        assert_eq!(short("sleep"), "sleep");
        let long = format!("/x/prog {}", "a".repeat(100));
        assert_eq!(short(&long).chars().count(), 48);
    }
}
