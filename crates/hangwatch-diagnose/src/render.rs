//! The diagnosis as text a person reads top to bottom: the verdict, then each process and
//! thread with what it waits on, then what could not be seen.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::model::{Diagnosis, ProcessDiagnosis, ThreadDiagnosis};

/// Renders `diagnosis` as plain text.
#[must_use]
pub fn render(diagnosis: &Diagnosis) -> String {
    let mut out = String::new();
    let taken = SystemTime::UNIX_EPOCH + Duration::from_millis(diagnosis.taken_at_ms);
    let first = diagnosis.processes.first();
    let _ = writeln!(
        out,
        "Diagnosis of pid {}{} at {}",
        first.map_or(diagnosis.root, |p| p.pid),
        first.map_or(String::new(), |p| format!(" ({})", p.command)),
        humantime::format_rfc3339_seconds(taken),
    );
    let _ = writeln!(
        out,
        "{} process(es), sampled over {} ms, took {} ms; the program was not paused.",
        diagnosis.processes.len(),
        diagnosis.sample_ms,
        diagnosis.took_ms,
    );
    if let Some(pressure) = &diagnosis.pressure {
        let parts: Vec<String> = pressure
            .resources
            .iter()
            .map(|r| {
                let mut text = format!("{} {:.0} % (last 10 s)", r.resource, r.now.some.avg10);
                if let Some(window) = r.some_window_pct {
                    let _ = write!(text, ", {window:.0} % of the window");
                }
                text
            })
            .collect();
        let _ = writeln!(
            out,
            "Host pressure (some task waiting): {}.",
            parts.join("; ")
        );
    }
    out.push_str("\nVerdict:\n");
    for finding in &diagnosis.verdict {
        let _ = writeln!(out, "  - {}", finding.text);
    }
    for process in &diagnosis.processes {
        out.push('\n');
        render_process(&mut out, process);
    }
    if !diagnosis.missing.is_empty() {
        out.push_str("\nNot seen:\n");
        for missing in &diagnosis.missing {
            let _ = writeln!(out, "  - {missing}");
        }
    }
    out
}

fn render_process(out: &mut String, process: &ProcessDiagnosis) {
    let _ = write!(
        out,
        "Process {} (parent {}): {}",
        process.pid, process.ppid, process.command
    );
    if let Some(version) = &process.python {
        let _ = write!(out, "  [Python {version}]");
    }
    out.push('\n');
    if let (Some(rss), peak) = (process.rss_kib, process.peak_rss_kib) {
        let _ = write!(out, "  memory: {} resident", kib(rss));
        if let Some(peak) = peak {
            let _ = write!(out, ", peak {}", kib(peak));
        }
        out.push('\n');
    }
    for thread in &process.threads {
        render_thread(out, thread);
    }
    if !process.fds.is_empty() {
        out.push_str("  open files:\n");
        for fd in &process.fds {
            let _ = writeln!(out, "    {:>4}  {}", fd.fd, fd.target);
        }
    }
}

fn render_thread(out: &mut String, thread: &ThreadDiagnosis) {
    let _ = write!(
        out,
        "  thread {} \"{}\" {}",
        thread.tid,
        thread.display_name(),
        thread.state
    );
    if let Some(wchan) = &thread.wchan {
        let _ = write!(out, " in {wchan}");
    }
    if let Some(python) = &thread.python {
        if python.holds_gil {
            out.push_str(", holds the GIL");
        }
        out.push_str(if python.active { ", active" } else { ", idle" });
    }
    out.push('\n');
    if let Some(blocked) = &thread.blocked_in {
        let _ = write!(out, "    blocked in {blocked}");
        if thread.blocked_whole_window {
            out.push_str(" (the whole window)");
        }
        out.push('\n');
    }
    if let (Some(cpu), Some(switches)) = (thread.cpu_ms, thread.switches) {
        let _ = write!(out, "    {cpu:.1} ms CPU");
        if let Some(wait) = thread.runnable_wait_ms.filter(|ms| *ms >= 0.05) {
            let _ = write!(out, ", {wait:.1} ms runnable but waiting for a CPU");
        }
        let _ = writeln!(out, " and {switches} context switch(es) in the window");
    }
    if let Some(wait) = &thread.python_lock {
        let _ = writeln!(
            out,
            "    waits for the {} {} at {:#x}: {}",
            wait.kind, wait.lock, wait.address, wait.evidence
        );
    }
    if let Some(python) = &thread.python {
        for frame in &python.frames {
            let _ = write!(out, "    {} in {}", frame.location(), frame.function);
            if let Some(code) = &frame.code {
                let _ = write!(out, ": {code}");
            }
            out.push('\n');
        }
    }
}

fn kib(kib: u64) -> String {
    if kib >= 10 * 1024 {
        format!("{} MiB", kib / 1024)
    } else {
        format!("{kib} KiB")
    }
}
