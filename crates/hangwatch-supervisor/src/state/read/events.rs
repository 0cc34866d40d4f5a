//! The event log read back: `events.jsonl` (one JSON record per line, as
//! [`crate::state::events`] writes it) and its rotated files, `events.jsonl.1`, `.2`… (the
//! highest number is the oldest).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::SystemTime;

use super::ReadError;
use crate::state::follow::{Opened, last_lines};
use crate::state::{EVENTS_FILE, parse_time, rotation};

/// Every line of the rotated event files (oldest first) and of the live one, and the live
/// file, open, with where its whole lines end (a record still being written is left for a
/// follower).
pub fn read_all(state: &Path) -> Result<(Vec<Vec<u8>>, Opened), ReadError> {
    let mut lines = Vec::new();
    let rotated = rotation::list(state, EVENTS_FILE).map_err(ReadError::io("read", state))?;
    for (_, path) in rotated {
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            // Rotated away (further) while listing: what it held is in the next one.
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(ReadError::io("read", path)(err)),
        };
        lines.extend(split(&text));
    }
    let live = state.join(EVENTS_FILE);
    let opened = match File::open(&live) {
        Ok(file) => {
            let whole_end = whole_lines_end(&file).map_err(ReadError::io("read", &live))?;
            let mut text = vec![0u8; whole_end as usize];
            file.read_exact_at(&mut text, 0)
                .map_err(ReadError::io("read", &live))?;
            lines.extend(split(&text));
            Some((file, whole_end))
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => return Err(ReadError::io("read", live)(err)),
    };
    Ok((lines, opened))
}

/// Where the whole lines of `file` end.
fn whole_lines_end(file: &File) -> io::Result<u64> {
    let end = file.metadata()?.len();
    Ok(last_lines(file, end, 0)?.1)
}

/// The non-empty lines of `text`.
fn split(text: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    text.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
}

/// Whether the record on `line` is at or after `since` (a record without a readable time is
/// kept, and so is every record without `since`).
#[must_use]
pub fn is_since(line: &[u8], since: Option<SystemTime>) -> bool {
    #[derive(serde::Deserialize)]
    struct At {
        at: String,
    }
    let Some(since) = since else {
        return true;
    };
    serde_json::from_slice::<At>(line)
        .ok()
        .and_then(|record| parse_time(&record.at))
        .is_none_or(|at| at >= since)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_files_come_oldest_first() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path();
        std::fs::write(dir.join("events.jsonl.2"), "a\nb\n").expect("write");
        std::fs::write(dir.join("events.jsonl.1"), "c\n").expect("write");
        std::fs::write(dir.join("events.jsonl.10"), "0\n").expect("write");
        std::fs::write(dir.join("events.jsonl"), "d\ne\npartial").expect("write");
        let (lines, opened) = read_all(dir).expect("read");
        let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        assert_eq!(lines, [&b"0"[..], b"a", b"b", b"c", b"d", b"e"]);
        assert_eq!(opened.map(|(_, end)| end), Some(4));
    }

    #[test]
    fn since_keeps_later_records() {
        let since = parse_time("2026-11-24T10:00:00Z");
        assert!(is_since(br#"{"at":"2026-11-24T10:00:00.001Z"}"#, since));
        assert!(!is_since(br#"{"at":"2026-11-24T09:59:59.999Z"}"#, since));
        assert!(is_since(b"not json", since));
        assert!(is_since(b"not json", None));
    }
}
