//! `hangwatch run --metrics-file PATH`: the run's outcome as Prometheus series, for
//! node_exporter's textfile collector (`--collector.textfile.directory`), which is how batch
//! jobs are usually watched: the file holds the *last* run, and is replaced whole at the end of
//! each one.
//!
//! The series are gauges of that run (a textfile is re-read at every scrape, so a counter would
//! only go backwards when a later run has fewer stalls): `hangwatch_run_success`,
//! `hangwatch_run_outcome{outcome=…}`, `hangwatch_run_exit_code`, `hangwatch_run_duration_seconds`,
//! `hangwatch_run_end_time_seconds` (for "has not run for a day" alerts),
//! `hangwatch_run_stalls{source=…}`, `hangwatch_run_leaks{kind=…}` and, with `--timeout`,
//! `hangwatch_run_timeout_seconds`. Each carries `command`, the program's file name.
//!
//! The file is written to a temporary file in the same directory, flushed to disk, then renamed
//! over PATH, so the collector never reads half a file (it reads every `*.prom` file, so the
//! temporary name does not end in `.prom`).

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::Path;

use hangwatch_protocol::report::{RunReport, StallSource};

/// Every stall source, so that each series exists (at 0) in every file.
const STALL_SOURCES: [StallSource; 6] = [
    StallSource::Notify,
    StallSource::File,
    StallSource::Output,
    StallSource::Trigger,
    StallSource::Stopping,
    StallSource::Probe,
];

/// The exposition of `report`.
#[must_use]
pub fn render(report: &RunReport) -> String {
    let command = report
        .command
        .first()
        .map(|argv0| {
            Path::new(argv0)
                .file_name()
                .map_or_else(|| argv0.clone(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let label = format!("command=\"{}\"", escape(&command));
    let mut out = String::with_capacity(2048);
    let mut gauge = |name: &str, help: &str, rows: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{{{label}{labels}}} {value}");
        }
    };
    gauge(
        "hangwatch_run_success",
        "1 when the last run exited 0 by itself, 0 otherwise.",
        &[(
            String::new(),
            f64::from(u8::from(report.outcome.exit_code == 0)),
        )],
    );
    gauge(
        "hangwatch_run_outcome",
        "How the last run ended (exited, signalled, timed-out, stalled, ...): always 1.",
        &[(
            format!(",outcome=\"{}\"", report.outcome.reason.as_str()),
            1.0,
        )],
    );
    gauge(
        "hangwatch_run_exit_code",
        "The exit code hangwatch returned for the last run.",
        &[(String::new(), f64::from(report.outcome.exit_code))],
    );
    gauge(
        "hangwatch_run_duration_seconds",
        "How long the last run took, program and descendants.",
        &[(String::new(), report.duration_ms / 1000.0)],
    );
    if let Ok(ended) = humantime::parse_rfc3339_weak(&report.ended_at)
        && let Ok(since_epoch) = ended.duration_since(std::time::UNIX_EPOCH)
    {
        gauge(
            "hangwatch_run_end_time_seconds",
            "When the last run ended, as Unix seconds.",
            &[(String::new(), since_epoch.as_secs_f64())],
        );
    }
    if let Some(timeout) = report.timeout_ms {
        gauge(
            "hangwatch_run_timeout_seconds",
            "The --timeout of the last run.",
            &[(String::new(), timeout as f64 / 1000.0)],
        );
    }
    let stall = report.stall.as_ref().map(|s| s.source);
    let stalls: Vec<(String, f64)> = STALL_SOURCES
        .iter()
        .map(|source| {
            (
                format!(",source=\"{}\"", source.as_str()),
                f64::from(u8::from(stall == Some(*source))),
            )
        })
        .collect();
    gauge(
        "hangwatch_run_stalls",
        "Stalls of the last run, by the liveness source that missed its deadline.",
        &stalls,
    );
    let objects = report.leaks.as_ref().map_or(0, |l| l.objects.len());
    gauge(
        "hangwatch_run_leaks",
        "What the last run left behind: leftover processes, and shared-memory or IPC objects.",
        &[
            (
                ",kind=\"process\"".to_owned(),
                report.leftovers.len() as f64,
            ),
            (",kind=\"object\"".to_owned(), objects as f64),
        ],
    );
    out
}

/// Writes `text` to `path` atomically: a temporary file beside it, `fsync`, rename.
///
/// # Errors
///
/// Any error creating, writing, syncing or renaming the file; PATH is then untouched.
pub fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a file name is needed"))?;
    let temporary = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writing_replaces_the_whole_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("job.prom");
        std::fs::write(&path, "old\n").expect("write");
        write_atomically(&path, "new\n").expect("replace");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["job.prom"], "no temporary file is left");
    }
}
