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

/// Diagnoses every descendant of `own_pid`, `program` first, and writes the incident. Blocks for the sampling
/// window: run it on a blocking thread.
pub(crate) fn capture(
    spec: &DiagnoseSpec,
    own_pid: i32,
    program: i32,
    reason: &str,
) -> IncidentRecord {
    capture_tree(spec, own_pid, true, program, reason)
}

/// [`capture`] for the tree under `root` (`root` itself included unless `skip_root`).
pub(crate) fn capture_tree(
    spec: &DiagnoseSpec,
    root: i32,
    skip_root: bool,
    program: i32,
    reason: &str,
) -> IncidentRecord {
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
