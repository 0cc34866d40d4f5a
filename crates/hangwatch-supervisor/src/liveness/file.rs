//! A status file's age as a heartbeat.
//!
//! Writers usually replace the file atomically (write a temp file, rename it over the old one),
//! so hangwatch follows the *path*, never an inode: each check is a fresh `stat` of the path.
//!
//! No watch is needed for exactness: the stall deadline is the file's modification time plus
//! the bound, and the file is re-checked *at* that deadline. A fresher file moves the deadline
//! on; an unchanged one is a stall, detected at the deadline and not a poll interval after
//! it. This costs one `stat` per bound, however often the program writes (an inotify watch
//! would wake hangwatch on every write of a busy program).
//!
//! # Caveats
//!
//! Modification times are wall-clock times: a clock step moves the deadline by as much.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// A status file followed by path.
#[derive(Debug, Clone)]
pub struct StatusFile {
    path: PathBuf,
}

/// What one look at the file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// The file does not exist (yet).
    Missing,
    /// Modified this long ago (zero if its time is in the future).
    Age(Duration),
}

impl StatusFile {
    /// Follows `path`. Relative paths are taken from hangwatch's working directory.
    #[must_use]
    pub fn new(path: &Path) -> StatusFile {
        StatusFile {
            path: path.to_owned(),
        }
    }

    /// The path followed.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Looks at the file now.
    pub fn check(&self) -> io::Result<FileState> {
        match std::fs::metadata(&self.path) {
            Ok(meta) => {
                let modified = meta.modified()?;
                Ok(FileState::Age(
                    SystemTime::now()
                        .duration_since(modified)
                        .unwrap_or(Duration::ZERO),
                ))
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(FileState::Missing),
            Err(err) => Err(err),
        }
    }

    /// The instant of the last heartbeat the file shows, as seen now: its modification time,
    /// or `None` when it is missing.
    pub fn last_beat(&self) -> io::Result<Option<Instant>> {
        Ok(match self.check()? {
            FileState::Missing => None,
            FileState::Age(age) => {
                Some(Instant::now().checked_sub(age).unwrap_or_else(Instant::now))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_then_fresh_then_replaced_by_rename() {
        let dir = std::env::temp_dir().join(format!("hangwatch-statusfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("status.json");
        let file = StatusFile::new(&path);
        assert_eq!(file.check().expect("check"), FileState::Missing);

        std::fs::write(&path, "{}").expect("write");
        let FileState::Age(age) = file.check().expect("check") else {
            panic!("file not seen");
        };
        assert!(age < Duration::from_secs(5));

        // Atomic replacement: the path now names another inode, and it is still followed.
        let tmp = dir.join("status.json.tmp");
        std::fs::write(&tmp, "{\"n\":2}").expect("write tmp");
        std::fs::rename(&tmp, &path).expect("rename");
        assert!(matches!(file.check().expect("check"), FileState::Age(_)));
        assert!(file.last_beat().expect("beat").is_some());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
