//! The diagnosis taken before a stalled or timed-out program is stopped, kept as an incident
//! file: the evidence a restart would otherwise destroy.

use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hangwatch_diagnose::incident::write_atomically;
use hangwatch_diagnose::{Diagnosis, IncidentFiles, Options, diagnose, render};
use hangwatch_protocol::report::{IncidentRecord, Survivor};
use tokio::sync::oneshot;

use crate::liveness::tail::LastOutput;

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
    additions: Additions,
) -> IncidentRecord {
    let (early, _taken, task) = anticipate(spec, subject, tokio::time::Instant::now());
    early.keep(reason, additions);
    task.await.unwrap_or_default()
}

/// A diagnosis begun before the deadline it is for: its sampling window runs up to that
/// deadline, so the stop that follows a stall waits for no window at all. Kept (written as
/// an incident) with [`Early::keep`]; dropping it throws the readings away, as when the
/// heartbeat comes after all.
#[derive(Debug)]
pub(crate) struct Early {
    /// The deadline it anticipates.
    pub(crate) target: tokio::time::Instant,
    keep: oneshot::Sender<(String, Additions)>,
}

impl Early {
    /// Keeps the diagnosis: it is written as an incident named for `reason`, with
    /// `additions`, once taken.
    pub(crate) fn keep(self, reason: String, additions: Additions) {
        // The task ends only after it got an answer, so it is there to receive one.
        let _ = self.keep.send((reason, additions));
    }
}

/// Begins diagnosing `subject` now, for a deadline at `target`. The future resolves with the
/// incident once the diagnosis is taken and [`Early::keep`] was called, or with `None` once
/// the [`Early`] is dropped. The receiver resolves as soon as the diagnosis is taken and kept,
/// before the incident is written: a stop need not wait for the disk. The diagnosis is
/// bounded by the spec's limit plus its window, and so is the writing.
pub(crate) fn anticipate(
    spec: DiagnoseSpec,
    subject: Subject,
    target: tokio::time::Instant,
) -> (
    Early,
    oneshot::Receiver<()>,
    impl Future<Output = Option<IncidentRecord>> + Send + 'static,
) {
    let (keep, kept) = oneshot::channel::<(String, Additions)>();
    let (taken_tx, taken) = oneshot::channel::<()>();
    let task = async move {
        let limit = spec.limit + spec.sample;
        let began = Instant::now();
        let dir = spec.dir.clone();
        let taking = tokio::task::spawn_blocking(move || take(&spec, subject));
        let taken = match tokio::time::timeout(limit, taking).await {
            Ok(Ok(taken)) => taken,
            Ok(Err(err)) => Err(format!("the diagnosis failed: {err}")),
            Err(_) => Err(format!(
                "the diagnosis took longer than {} and was abandoned",
                humantime::format_duration(limit)
            )),
        };
        let (reason, additions) = kept.await.ok()?;
        let _ = taken_tx.send(());
        let record = match taken {
            Ok(diagnosis) => {
                let writing = tokio::task::spawn_blocking(move || {
                    let mut record = IncidentRecord {
                        verdict: diagnosis.verdict.iter().map(|f| f.text.clone()).collect(),
                        degraded: diagnosis.degraded.clone(),
                        ..IncidentRecord::default()
                    };
                    if let Some(deferred) = &additions.deferred {
                        record.verdict.push(deferred_sentence(deferred));
                    }
                    match write(&dir, &diagnosis, &reason, &additions) {
                        Ok(files) => {
                            record.text_path = Some(files.text.display().to_string());
                            record.json_path = Some(files.json.display().to_string());
                        }
                        Err(err) => {
                            record.error = Some(format!(
                                "cannot write the incident to {}: {err}",
                                dir.display()
                            ));
                        }
                    }
                    record
                });
                match tokio::time::timeout(limit, writing).await {
                    Ok(Ok(record)) => record,
                    Ok(Err(err)) => IncidentRecord {
                        error: Some(format!("writing the incident failed: {err}")),
                        ..IncidentRecord::default()
                    },
                    Err(_) => IncidentRecord {
                        error: Some("writing the incident took too long".to_owned()),
                        ..IncidentRecord::default()
                    },
                }
            }
            Err(error) => IncidentRecord {
                error: Some(error),
                ..IncidentRecord::default()
            },
        };
        Some(IncidentRecord {
            took_ms: began.elapsed().as_secs_f64() * 1000.0,
            ..record
        })
    };
    (Early { target, keep }, taken, task)
}

/// Diagnoses `subject`. Blocks for the sampling window.
fn take(spec: &DiagnoseSpec, subject: Subject) -> Result<Diagnosis, String> {
    let (root, skip_root, program) = match subject {
        Subject::Descendants { own_pid, program } => (own_pid, true, program),
        Subject::Tree { program } => (program, false, program),
    };
    let options = Options {
        sample: spec.sample,
        python: spec.python,
        skip_root,
        primary: Some(program),
    };
    diagnose(root, &options).map_err(|err| format!("no diagnosis: {err}"))
}

/// What an incident holds beside the diagnosis: the sections that the supervisor knows and
/// the diagnosis does not. In the JSON file, each is a key next to the diagnosis's own.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct Additions {
    /// The processes that outlived a stop's grace, and why (see [`crate::survivors`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) survivors: Vec<Survivor>,
    /// What the program last wrote on stdout and stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) output: Option<LastOutput>,
    /// How long the stop waited out host pressure (`stall_defer_under_pressure`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) deferred: Option<Deferred>,
}

/// A stall's stop that waited out host pressure.
pub(crate) use hangwatch_protocol::report::StallDeferral as Deferred;

/// A deferral in words, for the verdict and the stall's event.
pub(crate) fn deferred_sentence(deferred: &Deferred) -> String {
    format!(
        "the stop was deferred {} for host pressure (CPU or memory up to {:.0} %, threshold \
         {:.0} %) and {}: no heartbeat came meanwhile",
        humantime::format_duration(Duration::from_millis(deferred.for_ms as u64)),
        deferred.peak_pct,
        deferred.above_pct,
        if deferred.bound_reached {
            "reached its bound"
        } else {
            "ended when the pressure fell"
        }
    )
}

/// Writes `diagnosis` with `additions` into `dir` (created if missing) as
/// `<time>-<pid>-<reason>.{txt,json}`; `reason` (`stalled`, `api-killed`) heads the text.
/// Each file is written whole or not at all.
pub(crate) fn write(
    dir: &Path,
    diagnosis: &Diagnosis,
    reason: &str,
    additions: &Additions,
) -> std::io::Result<IncidentFiles> {
    std::fs::create_dir_all(dir)?;
    let taken = std::time::SystemTime::UNIX_EPOCH + Duration::from_millis(diagnosis.taken_at_ms);
    // RFC 3339 without the characters that trouble file names and shells.
    let stamp: String = humantime::format_rfc3339_millis(taken)
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == 'T' || *c == '.')
        .collect();
    let slug: String = reason
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    // Named after the program (the first process), not a supervisor that asked.
    let pid = diagnosis
        .processes
        .first()
        .map_or(diagnosis.root, |p| p.pid);
    let base = format!("{stamp}-{pid}-{slug}");
    let text_path = dir.join(format!("{base}.txt"));
    let json_path = dir.join(format!("{base}.json"));
    let mut text = format!("Incident: {reason}\n\n");
    if let Some(deferred) = &additions.deferred {
        let _ = writeln!(
            text,
            "Deferred for host pressure: {}.\n",
            deferred_sentence(deferred)
        );
    }
    if !additions.survivors.is_empty() {
        text.push_str("Why the stop needed KILL:\n");
        for survivor in &additions.survivors {
            let _ = writeln!(
                text,
                "  - {} ({}) {}",
                survivor.process.pid,
                survivor.process.command,
                crate::survivors::handling_words(&survivor.survival)
            );
            for line in &survivor.survival.at {
                let _ = writeln!(text, "      {line}");
            }
        }
        text.push('\n');
    }
    text.push_str(&render(diagnosis));
    if let Some(output) = &additions.output {
        text.push_str("\nLast output (oldest first):\n");
        for (stream, lines) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
            if lines.is_empty() {
                continue;
            }
            let _ = writeln!(text, "  {stream}:");
            for line in lines {
                let _ = writeln!(text, "    {}  {}", line.at, line.line);
            }
        }
    }
    write_atomically(&text_path, text.as_bytes())?;
    let mut json = serde_json::to_value(diagnosis).map_err(std::io::Error::other)?;
    if let (Some(object), serde_json::Value::Object(extra)) = (
        json.as_object_mut(),
        serde_json::to_value(additions).map_err(std::io::Error::other)?,
    ) {
        object.extend(extra);
    }
    let bytes = serde_json::to_vec_pretty(&json).map_err(std::io::Error::other)?;
    write_atomically(&json_path, &bytes)?;
    Ok(IncidentFiles {
        text: text_path,
        json: json_path,
    })
}

/// Writes the incident of a stop's survivors (their diagnoses joined into one), or `None`
/// when the look took no diagnosis. Blocks for the writing.
pub(crate) fn write_survivors(
    dir: &Path,
    look: &crate::survivors::Look,
    reason: &str,
    output: Option<LastOutput>,
) -> Option<IncidentRecord> {
    let mut diagnoses = look.diagnoses.iter();
    let mut joined = diagnoses.next()?.clone();
    for more in diagnoses {
        joined.processes.extend(more.processes.iter().cloned());
        joined.verdict.extend(more.verdict.iter().cloned());
        joined.missing.extend(more.missing.iter().cloned());
        for degraded in &more.degraded {
            if !joined.degraded.iter().any(|d| d.part == degraded.part) {
                joined.degraded.push(degraded.clone());
            }
        }
    }
    let additions = Additions {
        survivors: look.survivors.clone(),
        output,
        deferred: None,
    };
    let mut record = IncidentRecord {
        verdict: look
            .survivors
            .iter()
            .map(crate::survivors::sentence)
            .collect(),
        took_ms: look.took.as_secs_f64() * 1000.0,
        degraded: joined.degraded.clone(),
        ..IncidentRecord::default()
    };
    match write(dir, &joined, reason, &additions) {
        Ok(files) => {
            record.text_path = Some(files.text.display().to_string());
            record.json_path = Some(files.json.display().to_string());
        }
        Err(err) => {
            record.error = Some(format!(
                "cannot write the incident to {}: {err}",
                dir.display()
            ));
        }
    }
    Some(record)
}
