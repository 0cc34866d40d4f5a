//! The diagnosis taken before a stalled or timed-out program is stopped, kept as an incident
//! file: the evidence a restart would otherwise destroy.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hangwatch_diagnose::{Options, diagnose, write_incident};
use hangwatch_protocol::report::IncidentRecord;

/// Where and how to diagnose before a stop.
#[derive(Debug, Clone)]
pub struct DiagnoseSpec {
    /// The directory incident files go to (created when first needed).
    pub dir: PathBuf,
    /// The sampling window.
    pub sample: Duration,
    /// Whether to read Python stacks.
    pub python: bool,
    /// The longest the stop waits for a diagnosis; past it, the stop begins without one.
    pub limit: Duration,
}

impl DiagnoseSpec {
    /// The defaults: a 200 ms window, Python stacks, at most 5 s, in `dir`.
    #[must_use]
    pub fn in_dir(dir: PathBuf) -> DiagnoseSpec {
        DiagnoseSpec {
            dir,
            sample: Duration::from_millis(200),
            python: true,
            limit: Duration::from_secs(5),
        }
    }
}

/// hangwatch's own incident directory for one-shot runs: `$XDG_STATE_HOME/hangwatch/incidents`,
/// else `~/.local/state/hangwatch/incidents`, else `/tmp/hangwatch-UID/incidents`.
#[must_use]
pub fn default_incident_dir() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|dir| !dir.is_empty())
                .map(|home| PathBuf::from(home).join(".local/state"))
        });
    match state {
        Some(state) => state.join("hangwatch/incidents"),
        None => PathBuf::from(format!(
            "/tmp/hangwatch-{}/incidents",
            nix::unistd::getuid().as_raw()
        )),
    }
}

/// Which processes a diagnosis looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject {
    /// Every descendant of hangwatch (`own_pid`), `program` first: `hangwatch run`'s one
    /// program and whatever it started.
    Descendants {
        /// hangwatch's own PID.
        own_pid: i32,
        /// The program.
        program: i32,
    },
    /// A service's program and its tree.
    Tree {
        /// The program.
        program: i32,
    },
}

/// Diagnoses `subject` on a blocking thread, bounded by the spec's limit plus its sampling
/// window, and writes the incident: the loop that awaits it never waits for /proc or ptrace.
/// A diagnosis that fails or runs out of time is a record with its `error`. The one bounded
/// diagnosis of `run` and `up`, for stalls, timeouts and requests alike.
pub(crate) async fn bounded(
    spec: DiagnoseSpec,
    subject: Subject,
    reason: String,
) -> IncidentRecord {
    let limit = spec.limit + spec.sample;
    let task = tokio::task::spawn_blocking(move || capture(&spec, subject, &reason));
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(record)) => record,
        Ok(Err(err)) => IncidentRecord {
            error: Some(format!("the diagnosis failed: {err}")),
            ..IncidentRecord::default()
        },
        Err(_) => IncidentRecord {
            error: Some(format!(
                "the diagnosis took longer than {} and was abandoned",
                humantime::format_duration(limit)
            )),
            took_ms: limit.as_secs_f64() * 1000.0,
            ..IncidentRecord::default()
        },
    }
}

/// Diagnoses `subject` and writes the incident. Blocks for the sampling window.
fn capture(spec: &DiagnoseSpec, subject: Subject, reason: &str) -> IncidentRecord {
    let (root, skip_root, program) = match subject {
        Subject::Descendants { own_pid, program } => (own_pid, true, program),
        Subject::Tree { program } => (program, false, program),
    };
    let began = Instant::now();
    let options = Options {
        sample: spec.sample,
        python: spec.python,
        skip_root,
        primary: Some(program),
    };
    let mut record = IncidentRecord::default();
    match diagnose(root, &options) {
        Ok(diagnosis) => {
            record.verdict = diagnosis.verdict.iter().map(|f| f.text.clone()).collect();
            match write_incident(&spec.dir, &diagnosis, reason) {
                Ok(files) => {
                    record.text_path = Some(files.text.display().to_string());
                    record.json_path = Some(files.json.display().to_string());
                }
                Err(err) => {
                    record.error = Some(format!(
                        "cannot write the incident to {}: {err}",
                        spec.dir.display()
                    ));
                }
            }
        }
        Err(err) => record.error = Some(format!("no diagnosis: {err}")),
    }
    record.took_ms = began.elapsed().as_secs_f64() * 1000.0;
    record
}
