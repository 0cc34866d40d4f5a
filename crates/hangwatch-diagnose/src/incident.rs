//! Incident files: a diagnosis kept on disk, as text for people and JSON for tools.
//!
//! Each is written to a temporary file, flushed to disk and renamed into place, so a reader
//! (or a crash) never sees half a file.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::model::Diagnosis;
use crate::render::render;

/// Where an incident was written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IncidentFiles {
    /// The text report.
    pub text: PathBuf,
    /// The JSON diagnosis.
    pub json: PathBuf,
}

/// Writes `diagnosis` into `dir` (created if missing) as `<time>-<pid>-<reason>.{txt,json}`;
/// `reason` is a short word such as `stalled` or `timeout` and heads the text file.
pub fn write_incident(
    dir: &Path,
    diagnosis: &Diagnosis,
    reason: &str,
) -> io::Result<IncidentFiles> {
    std::fs::create_dir_all(dir)?;
    let taken = SystemTime::UNIX_EPOCH + Duration::from_millis(diagnosis.taken_at_ms);
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
    let text = format!("Incident: {reason}\n\n{}", render(diagnosis));
    write_atomically(&text_path, text.as_bytes())?;
    let json = serde_json::to_vec_pretty(diagnosis).map_err(io::Error::other)?;
    write_atomically(&json_path, &json)?;
    Ok(IncidentFiles {
        text: text_path,
        json: json_path,
    })
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "incident".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename is durable once the directory is.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
