//! A service's log file: every line it printed, timestamped, rotated by size.
//!
//! Each line becomes `2026-11-24T10:00:00.123Z out | text` (UTC, milliseconds, `out` or `err`)
//! in `logs/SERVICE.log`, written with one `write(2)` as it arrives, so `tail -f` and
//! `hangwatch logs -f` see it at once. The bytes of the line are kept as the program wrote them,
//! UTF-8 or not.
//!
//! # Never blocking, never stopping
//!
//! The daemon writes from its event loop, so a log line costs at most one `write(2)` to a
//! regular file (plus, when the size limit is reached, a few renames); nothing is synced. A
//! write that fails (`ENOSPC`, `EIO`, `EROFS`, a deleted directory) drops the line and counts
//! it, and the file is reopened for the next line, so logging resumes by itself once space is
//! freed. A line the disk took only in part is cut off again, so the file holds whole lines.
//! [`LogFile::take_dropped`] tells the daemon how many lines were lost and why, for the event
//! log.
//!
//! # Rotation
//!
//! Before a line would make the file larger than `max_size`, `SERVICE.log` becomes
//! `SERVICE.log.1`, `.1` becomes `.2` and so on up to `keep`; the oldest is replaced. With
//! `keep = 0` the file is truncated instead. A single line longer than `max_size` is still
//! written, into a fresh file.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::Stream;

/// One service's log file.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    /// `None` after a failure: reopened on the next line.
    file: Option<File>,
    /// The file's size as far as this writer knows (it is the only writer).
    size: u64,
    /// The line being written, reused to avoid an allocation per line.
    buf: Vec<u8>,
    dropped: u64,
    last_error: Option<String>,
}

impl LogFile {
    /// Opens (or creates) `dir/SERVICE.log` for appending.
    pub fn open(dir: &Path, service: &str, max_size: u64, keep: u32) -> io::Result<LogFile> {
        let path = dir.join(file_name(service));
        let (file, size) = open_append(&path)?;
        Ok(LogFile {
            path,
            max_size,
            keep,
            file: Some(file),
            size,
            buf: Vec::with_capacity(256),
            dropped: 0,
            last_error: None,
        })
    }

    /// The file lines are written to.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `line` (without its newline) as printed on `stream` at `at`. A line that cannot
    /// be written is dropped and counted (see [`LogFile::take_dropped`]).
    pub fn write_line(&mut self, stream: Stream, line: &[u8], at: SystemTime) {
        self.buf.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(
            self.buf,
            "{} {} | ",
            humantime::format_rfc3339_millis(at),
            stream.as_str()
        );
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        if let Err((about, err)) = self.append() {
            self.dropped += 1;
            self.last_error = Some(format!("{about} {}: {err}", self.path.display()));
        }
    }

    /// The lines dropped since the last call and the last error, if any were.
    pub fn take_dropped(&mut self) -> Option<(u64, String)> {
        if self.dropped == 0 {
            return None;
        }
        let error = self.last_error.take().unwrap_or_default();
        Some((std::mem::take(&mut self.dropped), error))
    }

    fn append(&mut self) -> Result<(), (&'static str, io::Error)> {
        let len = self.buf.len() as u64;
        if self.file.is_none() {
            let (file, size) = open_append(&self.path).map_err(|err| ("open", err))?;
            self.file = Some(file);
            self.size = size;
        }
        if self.size > 0 && self.size + len > self.max_size {
            if let Err(err) = self.rotate() {
                self.file = None;
                return Err(("rotate", err));
            }
        }
        let Some(file) = self.file.as_mut() else {
            return Err(("open", io::ErrorKind::NotFound.into()));
        };
        match write_whole(file, &self.buf) {
            Ok(()) => {
                self.size += len;
                Ok(())
            }
            Err(err) => {
                self.file = None;
                Err(("write", err))
            }
        }
    }

    /// Moves the current file aside (or empties it, with `keep = 0`) and opens a new one.
    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            if let Some(file) = &self.file {
                file.set_len(0)?;
                self.size = 0;
                return Ok(());
            }
        }
        super::rotation::shift(&self.path, self.keep)?;
        let (file, size) = open_append(&self.path)?;
        self.file = Some(file);
        self.size = size;
        Ok(())
    }
}

/// `SERVICE.log`, the name of a service's live log in `logs/`.
#[must_use]
pub fn file_name(service: &str) -> String {
    format!("{service}.{EXTENSION}")
}

/// The service whose live log is named `file_name` (`NAME.log`; not a rotated `NAME.log.1`,
/// not a hidden file).
#[must_use]
pub fn service_of(file_name: &str) -> Option<&str> {
    file_name
        .strip_suffix(EXTENSION)
        .and_then(|name| name.strip_suffix('.'))
        .filter(|name| !name.is_empty() && !file_name.starts_with('.'))
}

/// The extension of a live log's name.
const EXTENSION: &str = "log";

fn open_append(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().append(true).create(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// Writes all of `bytes` to a file opened for appending, or, when the disk takes only part of
/// them, cuts the part off again so that the file never ends in half a line.
pub(super) fn write_whole(mut file: &File, bytes: &[u8]) -> io::Result<()> {
    let mut written = 0;
    while written < bytes.len() {
        match file.write(&bytes[written..]) {
            Ok(0) => return Err(cut_back(file, written, io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(cut_back(file, written, err)),
        }
    }
    Ok(())
}

fn cut_back(mut file: &File, written: usize, err: io::Error) -> io::Error {
    if written > 0 {
        // In append mode the offset is the end of the file, just after the part written.
        if let Ok(end) = file.stream_position() {
            let _ = file.set_len(end.saturating_sub(written as u64));
        }
    }
    err
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 2026-11-24T10:00:00.123Z.
    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_514_400_123)
    }

    fn read(path: &Path) -> Vec<u8> {
        std::fs::read(path).expect("read log")
    }

    #[test]
    fn lines_are_timestamped_and_kept_as_bytes() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut log = LogFile::open(tmp.path(), "web", 1 << 20, 3).expect("open");
        log.write_line(Stream::Out, b"hello", at());
        log.write_line(
            Stream::Err,
            b"bad \xff byte",
            at() + Duration::from_millis(1),
        );
        log.write_line(Stream::Out, b"", at());
        assert_eq!(
            read(&tmp.path().join("web.log")),
            b"2026-11-24T10:00:00.123Z out | hello\n\
              2026-11-24T10:00:00.124Z err | bad \xff byte\n\
              2026-11-24T10:00:00.123Z out | \n"
        );
        assert_eq!(log.take_dropped(), None);
    }

    #[test]
    fn reopening_appends() {
        let tmp = tempfile::tempdir().expect("temp dir");
        LogFile::open(tmp.path(), "a", 1 << 20, 1)
            .expect("open")
            .write_line(Stream::Out, b"one", at());
        LogFile::open(tmp.path(), "a", 1 << 20, 1)
            .expect("reopen")
            .write_line(Stream::Out, b"two", at());
        let text = read(&tmp.path().join("a.log"));
        assert_eq!(
            text.split(|&b| b == b'\n').count(),
            3,
            "two lines and the end"
        );
    }

    /// Each line is 40 bytes: 24 of time, 7 of `" out | "`, 8 of text and the newline.
    fn line(i: usize) -> Vec<u8> {
        format!("line{i:04}").into_bytes()
    }

    #[test]
    fn rotation_keeps_the_newest_files() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut log = LogFile::open(tmp.path(), "svc", 100, 2).expect("open");
        for i in 0..20 {
            log.write_line(Stream::Out, &line(i), at());
        }
        let dir = tmp.path();
        let current = read(&dir.join("svc.log"));
        let first = read(&dir.join("svc.log.1"));
        let second = read(&dir.join("svc.log.2"));
        assert!(!dir.join("svc.log.3").exists());
        // Two 40-byte lines fit in 100 bytes: 20 lines end in files of 18-19, 16-17, 14-15.
        assert!(current.ends_with(b"line0019\n") && current.len() == 80);
        assert!(first.ends_with(b"line0017\n") && first.len() == 80);
        assert!(second.ends_with(b"line0015\n") && second.len() == 80);
        assert_eq!(log.take_dropped(), None);
    }

    #[test]
    fn reopening_a_full_file_rotates_first() {
        let tmp = tempfile::tempdir().expect("temp dir");
        std::fs::write(tmp.path().join("svc.log"), [b'.'; 90]).expect("write");
        let mut log = LogFile::open(tmp.path(), "svc", 100, 1).expect("open");
        log.write_line(Stream::Out, &line(1), at());
        assert_eq!(read(&tmp.path().join("svc.log.1")), [b'.'; 90]);
        assert_eq!(read(&tmp.path().join("svc.log")).len(), 40);
    }

    #[test]
    fn keep_zero_truncates() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut log = LogFile::open(tmp.path(), "svc", 100, 0).expect("open");
        for i in 0..7 {
            log.write_line(Stream::Out, &line(i), at());
        }
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["svc.log"]);
        let text = read(&tmp.path().join("svc.log"));
        assert!(text.starts_with(b"2026") && text.ends_with(b"line0006\n"));
        assert_eq!(text.len(), 40);
    }

    #[test]
    fn an_over_long_line_gets_a_file_of_its_own() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut log = LogFile::open(tmp.path(), "svc", 100, 1).expect("open");
        log.write_line(Stream::Out, &line(0), at());
        log.write_line(Stream::Out, &[b'x'; 200], at());
        assert_eq!(read(&tmp.path().join("svc.log")).len(), 200 + 32);
        assert_eq!(read(&tmp.path().join("svc.log.1")).len(), 40);
    }

    #[test]
    fn write_errors_drop_lines_and_are_counted() {
        let tmp = tempfile::tempdir().expect("temp dir");
        // Every write to /dev/full fails with ENOSPC.
        std::os::unix::fs::symlink("/dev/full", tmp.path().join("svc.log")).expect("symlink");
        let mut log = LogFile::open(tmp.path(), "svc", 1 << 20, 1).expect("open");
        for i in 0..5 {
            log.write_line(Stream::Out, &line(i), at());
        }
        let (lines, error) = log.take_dropped().expect("dropped lines");
        assert_eq!(lines, 5);
        assert!(
            error.starts_with("write ") && error.contains("svc.log"),
            "{error}"
        );
        assert!(error.contains("No space left on device"), "{error}");
        assert_eq!(log.take_dropped(), None);
    }

    /// A real full file system: a 64 KiB tmpfs, mounted for this test. Needs root (and
    /// `CAP_SYS_ADMIN`); skipped with a message otherwise.
    #[test]
    fn a_full_disk_drops_lines_keeps_whole_lines_and_recovers() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let Some(_mount) = TmpfsMount::new(tmp.path(), "64k") else {
            return;
        };
        let dir = tmp.path();
        // Leave room for about 4 KiB of log (tmpfs counts whole pages).
        std::fs::write(dir.join("filler"), vec![0u8; 60 * 1024]).expect("fill");
        let mut log = LogFile::open(dir, "svc", 1 << 20, 1).expect("open");
        let text = [b'y'; 90];
        for _ in 0..200 {
            log.write_line(Stream::Out, &text, at());
        }
        let (dropped, error) = log.take_dropped().expect("lines dropped on a full disk");
        assert!(error.contains("No space left on device"), "{error}");
        let kept = read(&dir.join("svc.log"));
        assert_eq!(
            kept.len() % 122,
            0,
            "whole lines only: {} bytes",
            kept.len()
        );
        assert_eq!(kept.len() as u64 / 122 + dropped, 200);

        // Space comes back: logging resumes without any help.
        std::fs::remove_file(dir.join("filler")).expect("free space");
        log.write_line(Stream::Err, b"back", at());
        assert_eq!(log.take_dropped(), None);
        assert!(read(&dir.join("svc.log")).ends_with(b" err | back\n"));
    }

    /// A tmpfs mounted on a directory for the life of the value.
    struct TmpfsMount(PathBuf);

    impl TmpfsMount {
        fn new(dir: &Path, size: &str) -> Option<TmpfsMount> {
            if !nix::unistd::geteuid().is_root() {
                println!("skipped: mounting a tmpfs needs root");
                return None;
            }
            let status = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir)
                .status();
            match status {
                Ok(status) if status.success() => Some(TmpfsMount(dir.to_owned())),
                other => {
                    println!("skipped: cannot mount a tmpfs ({other:?})");
                    None
                }
            }
        }
    }

    impl Drop for TmpfsMount {
        fn drop(&mut self) {
            // Lazy, so that a file still open cannot keep the mount alive.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}
