//! The incidents kept in the state directory: the diagnoses written before stalled services
//! were stopped.
//!
//! Each incident is a pair of files in `STATE_DIR/incidents/`, `STEM.txt` (the rendered
//! report) and `STEM.json` (the diagnosis), the stem being `TIME-PID-SERVICE-CAUSE` (as
//! [`crate::incident`] names them); the stem is the incident's ID. The event log says more
//! than the name does (which liveness source missed its deadline, the service's exact name),
//! so the list joins each file with its `incident` event and the `stalled` or `over-memory`
//! event before it; an incident whose events are gone (rotated away, deleted) is described
//! from its files alone.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use hangwatch_protocol::event::{Event, EventRecord};
use serde::Serialize;

use super::ReadError;
use crate::state::INCIDENTS_DIR;

/// One incident as the list shows it.
#[derive(Debug, Default, Serialize)]
pub struct Incident {
    /// The files' common stem.
    pub id: String,
    /// When the diagnosis was written (RFC 3339, UTC).
    pub at: String,
    /// The service diagnosed.
    pub service: String,
    /// `stalled` or `over-memory`.
    pub cause: String,
    /// For a stall, the liveness source that missed its deadline (`notify`, `file`, `output`,
    /// `probe`…), when the event log still says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The verdict, strongest finding first.
    pub verdict: Vec<String>,
    /// The text report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_path: Option<PathBuf>,
    /// The JSON diagnosis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_path: Option<PathBuf>,
}

/// What the event log says of an incident file.
struct Logged {
    at: String,
    service: Option<String>,
    cause: Option<(String, Option<String>)>,
    verdict: Vec<String>,
}

/// The incidents of `state`, oldest first.
pub fn list(state: &Path) -> Result<Vec<Incident>, ReadError> {
    let dir = state.join(INCIDENTS_DIR);
    let mut files: BTreeMap<String, (Option<PathBuf>, Option<PathBuf>)> = BTreeMap::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(ReadError::io("read", dir)(err)),
    };
    for entry in entries.filter_map(Result::ok) {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // Hidden names are files still being written.
        if name.starts_with('.') {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".txt") {
            files.entry(stem.to_owned()).or_default().0 = Some(entry.path());
        } else if let Some(stem) = name.strip_suffix(".json") {
            files.entry(stem.to_owned()).or_default().1 = Some(entry.path());
        }
    }
    let logged = logged(state);
    let mut incidents: Vec<Incident> = files
        .into_iter()
        .map(|(id, (text_path, json_path))| {
            let logged = logged.get(&id);
            let reason = text_path.as_deref().and_then(reason_of);
            let (service, cause) = split_reason(reason.as_deref().unwrap_or_default());
            let (cause, source) = logged
                .and_then(|l| l.cause.clone())
                .unwrap_or((cause, None));
            let verdict = match logged {
                Some(logged) => logged.verdict.clone(),
                None => json_path.as_deref().map(verdict_of).unwrap_or_default(),
            };
            Incident {
                at: logged
                    .map(|l| l.at.clone())
                    .or_else(|| time_of_stem(&id))
                    .unwrap_or_default(),
                service: logged.and_then(|l| l.service.clone()).unwrap_or(service),
                cause,
                source,
                verdict,
                text_path,
                json_path,
                id,
            }
        })
        .collect();
    incidents.sort_by(|a, b| (&a.at, &a.id).cmp(&(&b.at, &b.id)));
    Ok(incidents)
}

/// The `incident` events of the log (rotated files included), by file stem, with the cause
/// the `stalled` or `over-memory` event before each gave. An unreadable log is no log.
fn logged(state: &Path) -> HashMap<String, Logged> {
    let Ok((lines, _)) = super::events::read_all(state) else {
        return HashMap::new();
    };
    let mut causes: HashMap<Option<String>, (String, Option<String>)> = HashMap::new();
    let mut logged = HashMap::new();
    for line in lines {
        let Ok(record) = serde_json::from_slice::<EventRecord>(&line) else {
            continue;
        };
        match record.event {
            Event::Stalled { source, .. } => {
                causes.insert(
                    record.service,
                    ("stalled".to_owned(), Some(source.as_str().to_owned())),
                );
            }
            Event::OverMemory { .. } => {
                causes.insert(record.service, ("over-memory".to_owned(), None));
            }
            Event::Incident(incident) => {
                let path = incident.text_path.or(incident.json_path);
                let Some(stem) = path
                    .as_deref()
                    .and_then(|p| Path::new(p).file_stem())
                    .and_then(|s| s.to_str())
                else {
                    continue;
                };
                logged.insert(
                    stem.to_owned(),
                    Logged {
                        at: record.at,
                        cause: causes.remove(&record.service),
                        service: record.service,
                        verdict: incident.verdict,
                    },
                );
            }
            _ => {}
        }
    }
    logged
}

/// `NAME-stalled` from the report's first line, `Incident: NAME-stalled`.
fn reason_of(text_path: &Path) -> Option<String> {
    use std::io::BufRead;
    let file = std::fs::File::open(text_path).ok()?;
    let mut first = String::new();
    std::io::BufReader::new(file).read_line(&mut first).ok()?;
    first
        .trim_end()
        .strip_prefix("Incident: ")
        .map(str::to_owned)
}

/// `("web", "stalled")` from `web-stalled`; the reason as the service when it names no
/// known cause.
fn split_reason(reason: &str) -> (String, String) {
    for why in hangwatch_protocol::report::IncidentWhy::ALL {
        let cause = why.as_str();
        if let Some(service) = reason.strip_suffix(cause).and_then(|r| r.strip_suffix('-')) {
            return (service.to_owned(), cause.to_owned());
        }
    }
    (reason.to_owned(), String::new())
}

/// The verdict lines of a JSON diagnosis.
fn verdict_of(json_path: &Path) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Finding {
        text: String,
    }
    #[derive(serde::Deserialize)]
    struct Diagnosis {
        verdict: Vec<Finding>,
    }
    std::fs::read(json_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Diagnosis>(&bytes).ok())
        .map(|d| d.verdict.into_iter().map(|f| f.text).collect())
        .unwrap_or_default()
}

/// `2026-11-24T10:00:00.123Z` from a stem that starts `20261124T100000.123Z-`.
fn time_of_stem(stem: &str) -> Option<String> {
    let stamp = stem.split('-').next()?;
    let b = stamp.as_bytes();
    if b.len() < 16 || b[8] != b'T' || !stamp.ends_with('Z') {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| {
        let part = stamp.get(range)?;
        part.bytes().all(|c| c.is_ascii_digit()).then_some(part)
    };
    let fraction = stamp.get(15..stamp.len() - 1)?;
    Some(format!(
        "{}-{}-{}T{}:{}:{}{fraction}Z",
        digits(0..4)?,
        digits(4..6)?,
        digits(6..8)?,
        digits(9..11)?,
        digits(11..13)?,
        digits(13..15)?,
    ))
}

/// The incident `id` names (the whole ID, or the start of exactly one); the newest without
/// one.
pub fn find<'a>(
    incidents: &'a [Incident],
    id: Option<&str>,
    state: &Path,
) -> Result<&'a Incident, ReadError> {
    let dir = state.join(INCIDENTS_DIR);
    let Some(id) = id else {
        return incidents.last().ok_or(ReadError::NoIncidents { dir });
    };
    if let Some(exact) = incidents.iter().find(|i| i.id == id) {
        return Ok(exact);
    }
    let matching: Vec<&Incident> = incidents.iter().filter(|i| i.id.starts_with(id)).collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => Err(ReadError::UnknownIncident {
            id: id.to_owned(),
            dir,
            count: incidents.len(),
        }),
        many => Err(ReadError::AmbiguousIncident {
            id: id.to_owned(),
            ids: many.iter().map(|i| i.id.clone()).collect(),
        }),
    }
}

/// What `hangwatch incidents show` prints of `incident`: with `json`, the diagnosis file as
/// written; otherwise the text report, or, when only the diagnosis is left, the report
/// rendered from it as the text file would have been.
pub fn report(incident: &Incident, json: bool) -> Result<Vec<u8>, ReadError> {
    let read = |path: &Path| std::fs::read(path).map_err(ReadError::io("read", path));
    let no_file = |missing| ReadError::NoFile {
        id: incident.id.clone(),
        missing,
    };
    if json {
        let path = incident
            .json_path
            .as_deref()
            .ok_or_else(|| no_file("JSON file"))?;
        return read(path);
    }
    if let Some(path) = &incident.text_path {
        return read(path);
    }
    let path = incident
        .json_path
        .as_deref()
        .ok_or_else(|| no_file("files"))?;
    let diagnosis: hangwatch_diagnose::Diagnosis =
        serde_json::from_slice(&read(path)?).map_err(|source| ReadError::Parse {
            path: path.to_owned(),
            source,
        })?;
    Ok(hangwatch_diagnose::render(&diagnosis).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_and_reason_of_a_stem() {
        assert_eq!(
            time_of_stem("20261124T100000.123Z-4242-web-stalled").as_deref(),
            Some("2026-11-24T10:00:00.123Z")
        );
        assert_eq!(time_of_stem("garbage"), None);
        assert_eq!(
            split_reason("my-web-over-memory"),
            ("my-web".to_owned(), "over-memory".to_owned())
        );
        assert_eq!(split_reason("web-stalled").1, "stalled");
    }

    #[test]
    fn files_without_events_are_described_from_themselves() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("incidents");
        std::fs::create_dir(&dir).expect("mkdir");
        let stem = "20261124T100000.123Z-42-web-stalled";
        std::fs::write(
            dir.join(format!("{stem}.txt")),
            "Incident: web-stalled\n\nreport\n",
        )
        .expect("write");
        std::fs::write(
            dir.join(format!("{stem}.json")),
            r#"{"verdict": [{"text": "a deadlock", "kind": "deadlock", "pid": 1, "tids": []}]}"#,
        )
        .expect("write");
        std::fs::write(dir.join(".20261124T1.txt.1.tmp"), "half").expect("write");
        let incidents = list(tmp.path()).expect("list");
        assert_eq!(incidents.len(), 1);
        let incident = &incidents[0];
        assert_eq!(incident.id, stem);
        assert_eq!(incident.at, "2026-11-24T10:00:00.123Z");
        assert_eq!(incident.service, "web");
        assert_eq!(incident.cause, "stalled");
        assert_eq!(incident.verdict, ["a deadlock"]);
        assert_eq!(
            find(&incidents, Some("2026"), tmp.path())
                .expect("prefix")
                .id,
            stem
        );
        assert!(find(&incidents, Some("x"), tmp.path()).is_err());
        assert_eq!(
            report(incident, false).expect("report"),
            b"Incident: web-stalled\n\nreport\n"
        );
        assert!(report(incident, true).expect("json").starts_with(b"{"));
    }
}
