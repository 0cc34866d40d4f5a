//! The services' logs read back: `logs/NAME.log` (`TIME out|err | text` lines, as
//! [`crate::state::logfile`] writes them), rotated to `NAME.log.1`, `.2`….

use std::fs::File;
use std::io;
use std::path::Path;

use super::ReadError;
use crate::state::follow::{Opened, last_lines};
use crate::state::{logfile, rotation};

/// The services that have a log, live or rotated, sorted.
pub fn logged_services(logs_dir: &Path) -> Result<Vec<String>, ReadError> {
    let entries =
        std::fs::read_dir(logs_dir).map_err(ReadError::io("read the log directory", logs_dir))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter_map(|file| {
            let live = rotation::base(&file).unwrap_or(&file);
            logfile::service_of(live).map(str::to_owned)
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// The last `n` lines of `name`'s log, oldest first, reaching into rotated files when the live
/// one has fewer; and the live file, [`Opened`], for a follower to go on from.
pub fn tail(logs_dir: &Path, name: &str, n: usize) -> io::Result<(Vec<Vec<u8>>, Opened)> {
    let live = logs_dir.join(logfile::file_name(name));
    let (mut lines, opened) = match File::open(&live) {
        Ok(file) => {
            let end = file.metadata()?.len();
            let (lines, whole_end) = last_lines(&file, end, n)?;
            (lines, Some((file, whole_end)))
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => (Vec::new(), None),
        Err(err) => return Err(err),
    };
    let mut number = 1;
    while lines.len() < n {
        let file = match File::open(rotation::rotated(&live, number)) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => break,
            Err(err) => return Err(err),
        };
        let end = file.metadata()?.len();
        // A rotated file is complete: a last line without `\n` counts.
        let (mut older, whole_end) = last_lines(&file, end, n - lines.len())?;
        if whole_end < end && older.len() < n - lines.len() {
            let mut rest = vec![0u8; (end - whole_end) as usize];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut rest, whole_end)?;
            older.push(rest);
            if older.len() > n - lines.len() {
                older.remove(0);
            }
        }
        older.extend(lines);
        lines = older;
        number += 1;
    }
    Ok((lines, opened))
}

/// `2026-11-24T10:00:00.123Z`, the time at the start of a log line.
#[must_use]
pub fn line_time(line: &[u8]) -> Option<&[u8]> {
    (line.len() > 24 && line[23] == b'Z' && line[24] == b' ').then(|| &line[..24])
}

/// Orders lines of several files (each tagged with its file) by their times, keeping each
/// file's order (a line without a time goes with the line before it).
#[must_use]
pub fn by_time(lines: Vec<(usize, Vec<u8>)>) -> Vec<(usize, Vec<u8>)> {
    let mut last: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut keyed: Vec<(Vec<u8>, usize, usize, Vec<u8>)> = Vec::with_capacity(lines.len());
    for (seq, (file, line)) in lines.into_iter().enumerate() {
        let key = match line_time(&line) {
            Some(stamp) => {
                match last.iter_mut().find(|(f, _)| *f == file) {
                    Some(entry) => entry.1 = stamp.to_vec(),
                    None => last.push((file, stamp.to_vec())),
                }
                stamp.to_vec()
            }
            None => last
                .iter()
                .find(|(f, _)| *f == file)
                .map(|(_, stamp)| stamp.clone())
                .unwrap_or_default(),
        };
        keyed.push((key, seq, file, line));
    }
    // RFC 3339 in UTC with fixed width sorts as text.
    keyed.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    keyed
        .into_iter()
        .map(|(_, _, file, line)| (file, line))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_several_files_interleave_by_time() {
        let lines = vec![
            (0, b"2026-11-24T10:00:00.100Z out | a1".to_vec()),
            (0, b"continued".to_vec()),
            (0, b"2026-11-24T10:00:00.300Z out | a2".to_vec()),
            (1, b"2026-11-24T10:00:00.200Z err | b1".to_vec()),
            (1, b"2026-11-24T10:00:00.300Z out | b2".to_vec()),
        ];
        let sorted: Vec<String> = by_time(lines)
            .into_iter()
            .map(|(_, l)| String::from_utf8_lossy(&l).into_owned())
            .collect();
        let texts: Vec<&str> = sorted
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap_or_default())
            .collect();
        assert_eq!(texts, ["a1", "continued", "b1", "a2", "b2"]);
    }

    #[test]
    fn names_of_log_files() {
        assert_eq!(logfile::service_of("web.log"), Some("web"));
        assert_eq!(logfile::service_of("a.b.log"), Some("a.b"));
        assert_eq!(logfile::service_of("web.log.1"), None);
        assert_eq!(logfile::service_of(".web.log"), None);
        let tmp = tempfile::tempdir().expect("temp dir");
        for file in [
            "web.log",
            "web.log.1",
            "old.log.2",
            "x.txt",
            "a.b.log",
            ".hidden.log.1",
        ] {
            std::fs::write(tmp.path().join(file), "").expect("write");
        }
        assert_eq!(
            logged_services(tmp.path()).expect("list"),
            ["a.b", "old", "web"]
        );
    }

    #[test]
    fn the_tail_reaches_into_rotated_files() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path();
        std::fs::write(dir.join("s.log.2"), "1\n2\n").expect("write");
        std::fs::write(dir.join("s.log.1"), "3\n4\n").expect("write");
        std::fs::write(dir.join("s.log"), "5\n6").expect("write");
        let (lines, opened) = tail(dir, "s", 4).expect("tail");
        assert_eq!(
            lines,
            [b"2".to_vec(), b"3".to_vec(), b"4".to_vec(), b"5".to_vec()]
        );
        assert_eq!(opened.map(|(_, end)| end), Some(2));
        let (lines, _) = tail(dir, "s", 10).expect("tail");
        assert_eq!(lines.len(), 5);
        let (lines, opened) = tail(dir, "none", 3).expect("tail");
        assert!(lines.is_empty() && opened.is_none());
    }
}
