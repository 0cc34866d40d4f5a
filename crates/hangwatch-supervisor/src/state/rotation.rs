//! Rotated files: how they are named and shifted, for the writers of the state directory (the
//! event log, the services' logs) and for its readers (`hangwatch logs`, `events`, following).
//!
//! A file `NAME` rotated by size becomes `NAME.1`; what was `NAME.1` becomes `NAME.2`, and so on
//! up to the number kept, so the highest number is the oldest. The renames go from the highest
//! number down, so that no file is overwritten before it moved on: a reader listing the
//! directory in the middle of a shift may find a low number missing for a moment, or one file
//! under two names, and must not take a gap for the end.

use std::io;
use std::path::{Path, PathBuf};

/// `NAME.n`, the `n`th newest rotated file of `path`.
#[must_use]
pub fn rotated(path: &Path, n: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Moves `path` aside as `NAME.1` after shifting the rotated files one number up, keeping at
/// most `keep` of them (the oldest is replaced); with `keep = 0`, `path` is removed. The caller
/// creates the new file.
pub fn shift(path: &Path, keep: u32) -> io::Result<()> {
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    for n in (1..u64::from(keep)).rev() {
        match std::fs::rename(rotated(path, n), rotated(path, n + 1)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
    }
    std::fs::rename(path, rotated(path, 1))
}

/// The rotation number of `file_name` if it is a rotated file of `name` (`NAME.N`).
#[must_use]
pub fn number(file_name: &str, name: &str) -> Option<u64> {
    file_name
        .strip_prefix(name)?
        .strip_prefix('.')?
        .parse()
        .ok()
}

/// The name a rotated file was rotated from: `NAME` for `NAME.N` (`N` digits only).
#[must_use]
pub fn base(file_name: &str) -> Option<&str> {
    let (base, n) = file_name.rsplit_once('.')?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(base)
}

/// The rotated files of `name` in `dir` with their numbers, the oldest (the highest number)
/// first.
pub fn list(dir: &Path, name: &str) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut numbered: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let n = number(entry.file_name().to_str()?, name)?;
            Some((n, entry.path()))
        })
        .collect();
    numbered.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    Ok(numbered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let path = Path::new("/s/logs/web.log");
        assert_eq!(rotated(path, 3), Path::new("/s/logs/web.log.3"));
        assert_eq!(number("web.log.12", "web.log"), Some(12));
        assert_eq!(number("web.log", "web.log"), None);
        assert_eq!(number("web.log.x", "web.log"), None);
        assert_eq!(number("web.logs.1", "web.log"), None);
        assert_eq!(base("web.log.2"), Some("web.log"));
        assert_eq!(base("a.b.log.10"), Some("a.b.log"));
        assert_eq!(base("web.log"), None);
        assert_eq!(base("web.log."), None);
    }

    #[test]
    fn a_shift_keeps_the_newest_and_lists_them_oldest_first() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("e.jsonl");
        for text in ["1", "2", "3", "4"] {
            std::fs::write(&path, text).expect("write");
            shift(&path, 2).expect("shift");
        }
        assert!(!path.exists());
        let listed = list(tmp.path(), "e.jsonl").expect("list");
        let texts: Vec<(u64, String)> = listed
            .iter()
            .map(|(n, p)| (*n, std::fs::read_to_string(p).expect("read")))
            .collect();
        assert_eq!(texts, [(2, "3".to_owned()), (1, "4".to_owned())]);
        std::fs::write(&path, "5").expect("write");
        shift(&path, 0).expect("remove");
        assert!(!path.exists());
        assert_eq!(list(tmp.path(), "e.jsonl").expect("list").len(), 2);
    }
}
