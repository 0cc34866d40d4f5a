//! The state directory itself, and the lock that makes one hangwatch its only owner.
//!
//! Two supervisors of one directory would fight over the same logs and kill each other's
//! services as "survivors", so [`StateDir::open`] takes an exclusive `flock` on
//! `STATE_DIR/lock` and keeps it as long as the value lives. The lock is what is trusted: it is
//! released by the kernel when its holder dies, even by SIGKILL, so a stale lock file cannot
//! lock anyone out, and a recycled PID cannot fake a holder. The PID written into the file after
//! locking only names the holder in the error message.
//!
//! The lock file is opened close-on-exec (as every file Rust opens), so services never inherit
//! it: a service that outlives a killed hangwatch does not keep the directory locked.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Why the state directory could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Another hangwatch holds the lock.
    #[error("open the state directory: another hangwatch uses it{}", pid_suffix(*.pid))]
    Busy {
        /// The holder's PID, as it wrote it into the lock file (absent if it had not yet).
        pid: Option<i32>,
    },
    /// A file or directory could not be created, opened or locked.
    #[error("{about} {}", path.display())]
    Io {
        /// What was being done.
        about: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn pid_suffix(pid: Option<i32>) -> String {
    pid.map(|pid| format!(" (PID {pid})")).unwrap_or_default()
}

/// An open, locked state directory.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    /// Held, never read: dropping it releases the lock.
    _lock: Flock<File>,
}

impl StateDir {
    /// Creates `path` (and `logs/`, `incidents/`) if needed and locks it for this process.
    ///
    /// Fails with [`StateError::Busy`] at once, without waiting, when another process holds the
    /// lock.
    pub fn open(path: &Path) -> Result<StateDir, StateError> {
        let io = |about, path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Io {
                about,
                path,
                source,
            }
        };
        std::fs::create_dir_all(path).map_err(io("create the state directory", path))?;
        let lock_path = path.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io("open the lock file", &lock_path))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                return Err(StateError::Busy {
                    pid: read_pid(&mut file),
                });
            }
            Err((_, errno)) => {
                return Err(io("lock the state directory", &lock_path)(errno.into()));
            }
        };
        write_pid(&mut lock).map_err(io("write the lock file", &lock_path))?;
        let dir = StateDir {
            path: path.to_owned(),
            _lock: lock,
        };
        for sub in [dir.logs_dir(), dir.incidents_dir()] {
            std::fs::create_dir_all(&sub).map_err(io("create", &sub))?;
        }
        Ok(dir)
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The event log, `events.jsonl`.
    #[must_use]
    pub fn events_path(&self) -> PathBuf {
        self.path.join(super::EVENTS_FILE)
    }

    /// Where the services' log files go, `logs/`.
    #[must_use]
    pub fn logs_dir(&self) -> PathBuf {
        self.path.join(super::LOGS_DIR)
    }

    /// Where incident files go, `incidents/`.
    #[must_use]
    pub fn incidents_dir(&self) -> PathBuf {
        self.path.join(super::INCIDENTS_DIR)
    }

    /// The instance record, `instance.json`.
    #[must_use]
    pub fn instance_path(&self) -> PathBuf {
        self.path.join("instance.json")
    }

    /// The control socket, `control.sock`. A Unix socket path is limited to 107 bytes, so a
    /// deeply nested state directory may need a shorter way to reach it.
    #[must_use]
    pub fn socket_path(&self) -> PathBuf {
        self.path.join("control.sock")
    }
}

/// Replaces the lock file's content with our PID.
fn write_pid(file: &mut File) -> io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())
}

/// The holder's PID from the lock file, if it wrote one (it may be between locking and writing).
fn read_pid(file: &mut File) -> Option<i32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_the_layout_and_writes_its_pid() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("nested").join(".hangwatch");
        let dir = StateDir::open(&path).expect("open");
        assert!(dir.logs_dir().is_dir());
        assert!(dir.incidents_dir().is_dir());
        assert_eq!(dir.events_path(), path.join("events.jsonl"));
        assert_eq!(dir.instance_path(), path.join("instance.json"));
        assert_eq!(dir.socket_path(), path.join("control.sock"));
        let pid = std::fs::read_to_string(path.join("lock")).expect("read lock");
        assert_eq!(pid, format!("{}\n", std::process::id()));
    }

    #[test]
    fn second_opener_is_refused_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let first = StateDir::open(tmp.path()).expect("first open");
        // flock locks belong to the open file description, so a second open in the same process
        // conflicts just as another process would.
        match StateDir::open(tmp.path()) {
            Err(StateError::Busy { pid }) => assert_eq!(pid, Some(std::process::id() as i32)),
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(first);
        StateDir::open(tmp.path()).expect("open after release");
    }

    #[test]
    fn a_stale_lock_file_does_not_lock_anyone_out() {
        let tmp = tempfile::tempdir().expect("temp dir");
        // What a SIGKILLed hangwatch leaves: the file with a PID, but no lock.
        std::fs::write(tmp.path().join("lock"), "1234567\n").expect("write");
        let _dir = StateDir::open(tmp.path()).expect("open");
        let pid = std::fs::read_to_string(tmp.path().join("lock")).expect("read lock");
        assert_eq!(pid, format!("{}\n", std::process::id()));
    }

    #[test]
    fn a_holder_in_another_process_is_named() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let lock = tmp.path().join("lock");
        // The shell locks an fd of its own with flock(1), writes its PID, and becomes `sleep`,
        // which keeps the fd and so the lock.
        let script =
            "exec 9>>\"$0\"; flock -n 9 || exit 1; echo $$ > \"$0\"; echo locked; exec sleep 30";
        let mut holder = std::process::Command::new("sh")
            .args(["-c", script])
            .arg(&lock)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn flock");
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("piped");
        io::BufRead::read_line(&mut io::BufReader::new(stdout), &mut line).expect("read");
        assert_eq!(line, "locked\n");
        let result = StateDir::open(tmp.path());
        let _ = holder.kill();
        let _ = holder.wait();
        match result {
            Err(StateError::Busy { pid: Some(pid) }) => assert_eq!(pid, holder.id() as i32),
            other => panic!("expected Busy with a PID, got {other:?}"),
        }
    }
}
