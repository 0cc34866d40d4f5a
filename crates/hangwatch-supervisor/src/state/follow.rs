//! Reading files of one directory as they grow, as `tail -F` does, driven by inotify.
//!
//! The supervisor appends whole lines and rotates by renaming ([`super::rotation`]: `NAME.log`
//! becomes `NAME.log.1` and a new `NAME.log` is created at the next line); a log with
//! `log_keep = 0` is truncated instead. A [`Follower`] watches the directory, not the files, so it sees all of this as
//! events on names: a write (`IN_MODIFY`), a rename away (`IN_MOVED_FROM`), a new file
//! (`IN_CREATE`, `IN_MOVED_TO`). On any event about a followed name it reads the open file to
//! its end, then checks whether the name still leads to that file; if it leads to another, it
//! reads the old file to its end once more (the writer's last lines to it came before the
//! rename that the check saw) and switches to the new one from its start. Nothing is polled
//! on a timer: with nothing written, the process sleeps in `poll(2)`.
//!
//! A writer may rotate several times before the reader looks (a burst of output into a small
//! log): the files in between are found among the rotated names (`NAME.1`, `NAME.2`…) by
//! their inodes and read whole, in order. Files rotated past the number kept before the
//! reader got to them are gone, for this reader as for `tail -F`.
//!
//! The same `poll` watches stdout for the reader going away (`POLLERR` on a pipe whose reading
//! end was closed), so `hangwatch events -f | grep -m1 x` ends as soon as grep does, not at
//! the next event.
//!
//! A line is handed out only with its `\n`; a tail without one is kept until the rest comes.
//! A tail that disappears because the writer cut a partial write back is forgotten, not
//! mistaken for a truncation of the whole file.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

use super::rotation;

/// The most read from one file before others get a turn (and the caller gets lines).
const READ_LIMIT: u64 = 1 << 20;

/// A line without its end longer than this is handed out as it is.
const PARTIAL_LIMIT: usize = 1 << 20;

/// A file already open under a followed name, and where its whole lines end (where following
/// begins); `None` when it does not exist yet.
pub type Opened = Option<(File, u64)>;

/// A whole line of a followed file, without its `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Which file, as returned by [`Follower::add`].
    pub file: usize,
    /// The bytes, as written.
    pub bytes: Vec<u8>,
}

/// Follows files of one directory.
pub struct Follower {
    dir: PathBuf,
    inotify: OwnedFd,
    files: Vec<Followed>,
    /// Which names appearing later are followed (from their start).
    pick_up: Box<dyn Fn(&str) -> bool>,
    /// Every file is checked once at the first wait, whatever the events.
    primed: bool,
}

struct Followed {
    name: String,
    file: Option<File>,
    /// Device and inode of `file`.
    id: Option<(u64, u64)>,
    offset: u64,
    partial: Vec<u8>,
    /// The bytes just before the end of the last whole line handed out.
    seen: Vec<u8>,
    /// Read stopped at [`READ_LIMIT`] with more to read.
    more: bool,
}

impl Follower {
    /// Starts watching `dir`. Call it before reading what the files hold already, so that
    /// nothing written in between is missed. New files whose name `pick_up` accepts are
    /// followed from their start.
    pub fn new(dir: &Path, pick_up: impl Fn(&str) -> bool + 'static) -> io::Result<Follower> {
        let inotify = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        inotify::add_watch(
            &inotify,
            dir,
            WatchFlags::MODIFY
                | WatchFlags::CREATE
                | WatchFlags::MOVED_FROM
                | WatchFlags::MOVED_TO
                | WatchFlags::DELETE
                | WatchFlags::ONLYDIR,
        )
        .map_err(|err| {
            io::Error::new(
                io::Error::from(err).kind(),
                format!("cannot watch {}: {err}", dir.display()),
            )
        })?;
        Ok(Follower {
            dir: dir.to_owned(),
            inotify,
            files: Vec::new(),
            pick_up: Box::new(pick_up),
            primed: false,
        })
    }

    /// Follows `name` from `offset` of `file`, the file already open under that name and read
    /// up to there; with `None`, from the start of the file once it exists. Returns the index
    /// [`Line::file`] will carry.
    pub fn add(&mut self, name: &str, opened: Opened) -> usize {
        if let Some(i) = self.index(name) {
            return i;
        }
        let (file, offset) = match opened {
            Some((file, offset)) => (Some(file), offset),
            None => (None, 0),
        };
        let id = file
            .as_ref()
            .and_then(|file| file.metadata().ok())
            .map(|m| identity(&m));
        let seen = file
            .as_ref()
            .and_then(|file| bytes_before(file, offset).ok())
            .unwrap_or_default();
        self.files.push(Followed {
            name: name.to_owned(),
            file,
            id,
            offset,
            partial: Vec::new(),
            seen,
            more: false,
        });
        self.files.len() - 1
    }

    /// The file name of followed file `i`.
    #[must_use]
    pub fn name(&self, i: usize) -> &str {
        &self.files[i].name
    }

    /// Waits until followed files have new whole lines and returns them (each file's in
    /// order). Fails with [`io::ErrorKind::BrokenPipe`] when `out` (stdout) is closed by its
    /// reader while waiting.
    pub fn wait(&mut self, out: BorrowedFd<'_>) -> io::Result<Vec<Line>> {
        let mut lines = Vec::new();
        if !self.primed {
            self.primed = true;
            for i in 0..self.files.len() {
                self.check(i, &mut lines)?;
            }
        }
        loop {
            if !lines.is_empty() {
                return Ok(lines);
            }
            // A file read only in part is read on at once; otherwise sleep until an event.
            let more = self.files.iter().any(|f| f.more);
            let now = Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let mut fds = [
                PollFd::new(&self.inotify, PollFlags::IN),
                PollFd::from_borrowed_fd(out, PollFlags::empty()),
            ];
            match poll(&mut fds, more.then_some(&now)) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(err) => return Err(err.into()),
            }
            if fds[1].revents().intersects(PollFlags::ERR | PollFlags::HUP) {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let touched = if fds[0].revents().contains(PollFlags::IN) {
                self.read_events()?
            } else {
                Touched::default()
            };
            let mut check: BTreeSet<usize> = (0..self.files.len())
                .filter(|&i| self.files[i].more || touched.all)
                .collect();
            let mut new_names: Vec<String> = Vec::new();
            if touched.all {
                new_names.extend(self.unfollowed_names());
            }
            for name in touched.names {
                match self.index(&name) {
                    Some(i) => {
                        check.insert(i);
                    }
                    None => new_names.push(name),
                }
            }
            for name in new_names {
                if self.index(&name).is_none()
                    && (self.pick_up)(&name)
                    && self.dir.join(&name).is_file()
                {
                    check.insert(self.add(&name, None));
                }
            }
            for i in check {
                self.check(i, &mut lines)?;
            }
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.files.iter().position(|f| f.name == name)
    }

    /// Names in the directory not followed yet (after the kernel dropped events).
    fn unfollowed_names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| self.index(name).is_none())
            .collect()
    }

    /// Reads the queued inotify events.
    fn read_events(&self) -> io::Result<Touched> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
        let mut reader = inotify::Reader::new(&self.inotify, &mut buf);
        let mut touched = Touched::default();
        loop {
            match reader.next() {
                Ok(event) => {
                    let flags = event.events();
                    if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                        touched.all = true;
                    }
                    if flags.contains(ReadFlags::IGNORED) {
                        return Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("{} was removed", self.dir.display()),
                        ));
                    }
                    if flags.contains(ReadFlags::ISDIR) {
                        continue;
                    }
                    if let Some(name) = event.file_name()
                        && let Ok(name) = std::str::from_utf8(name.to_bytes())
                        && !touched.names.iter().any(|n| n == name)
                    {
                        touched.names.push(name.to_owned());
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return Ok(touched),
                Err(rustix::io::Errno::INTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Reads file `i` to its end and, if its name now leads to another file, switches to it.
    fn check(&mut self, i: usize, lines: &mut Vec<Line>) -> io::Result<()> {
        self.drain(i, lines)?;
        if self.files[i].more {
            return Ok(());
        }
        let path = self.dir.join(&self.files[i].name);
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            // Renamed away: the new file comes with its own event.
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err),
        };
        if self.files[i].id == Some(identity(&meta)) {
            return Ok(());
        }
        // The writer's last lines to the old file came before the rename just seen.
        self.drain(i, lines)?;
        if self.files[i].more {
            return Ok(());
        }
        let followed = &mut self.files[i];
        if !followed.partial.is_empty() {
            lines.push(Line {
                file: i,
                bytes: std::mem::take(&mut followed.partial),
            });
        }
        // Files the writer filled and rotated away while this one was being read. Each read
        // becomes the one followed, so that if the live name is not there yet, the next check
        // starts after it. The live file is taken once no rotated file lies between it and
        // the last one read (a rotation may happen while looking).
        loop {
            if let Some(old) = followed.id {
                for (file, id) in rotated_since(&self.dir, &followed.name, old) {
                    let len = read_whole(&file, i, lines)?;
                    followed.seen = bytes_before(&file, len)?;
                    followed.file = Some(file);
                    followed.id = Some(id);
                    followed.offset = len;
                }
            }
            let live = match File::open(&path) {
                Ok(file) => file,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(err) => return Err(err),
            };
            let between = followed
                .id
                .is_some_and(|old| !rotated_since(&self.dir, &followed.name, old).is_empty());
            if !between {
                followed.id = Some(identity(&live.metadata()?));
                followed.file = Some(live);
                followed.offset = 0;
                followed.seen.clear();
                break;
            }
        }
        self.drain(i, lines)
    }

    /// Reads file `i` from its offset to its end (at most [`READ_LIMIT`]).
    fn drain(&mut self, i: usize, lines: &mut Vec<Line>) -> io::Result<()> {
        let followed = &mut self.files[i];
        followed.more = false;
        let Some(file) = &followed.file else {
            return Ok(());
        };
        // An unfinished line is read again from its start: the writer may have cut a partial
        // write back and written the line anew.
        followed.offset -= followed.partial.len() as u64;
        followed.partial.clear();
        let len = file.metadata()?.len();
        if followed.offset > 0 && !still_there(file, followed.offset, &followed.seen, len)? {
            // Truncated (a log with `log_keep = 0`) and perhaps written again: start over.
            followed.offset = 0;
        }
        let end = len.min(followed.offset + READ_LIMIT);
        let mut buf = vec![0u8; (end - followed.offset).min(64 * 1024) as usize];
        while followed.offset < end {
            let want = ((end - followed.offset) as usize).min(buf.len());
            let n = match file.read_at(&mut buf[..want], followed.offset) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            followed.offset += n as u64;
            split_lines(&buf[..n], &mut followed.partial, |bytes| {
                lines.push(Line { file: i, bytes });
            });
        }
        if followed.partial.len() > PARTIAL_LIMIT {
            lines.push(Line {
                file: i,
                bytes: std::mem::take(&mut followed.partial),
            });
        }
        followed.more = followed.offset < len;
        let line_end = followed.offset - followed.partial.len() as u64;
        followed.seen = bytes_before(file, line_end)?;
        Ok(())
    }
}

/// The rotated files (`NAME.1`, `NAME.2`…) newer than file `old`, oldest first: those between
/// the file a reader was on and the live one, when the writer rotated more than once before the
/// reader looked. If `old` is no longer among them (rotated past the number kept), every one
/// is newer. Each is opened at once, so that a further rotation cannot take it away.
fn rotated_since(dir: &Path, name: &str, old: (u64, u64)) -> Vec<(File, (u64, u64))> {
    // A rotation renames from the highest number down, so a low number may be missing for a
    // moment: every number up to the highest listed (and past it, for a shift while looking)
    // is tried, not only up to the first gap.
    let highest = rotation::list(dir, name)
        .ok()
        .and_then(|listed| listed.first().map(|(n, _)| *n))
        .unwrap_or(0);
    let path = dir.join(name);
    let mut newer: Vec<(File, (u64, u64))> = Vec::new();
    for n in 1..=highest + 2 {
        let Ok(file) = File::open(rotation::rotated(&path, n)) else {
            continue;
        };
        let Ok(id) = file.metadata().map(|m| identity(&m)) else {
            continue;
        };
        if id == old {
            break;
        }
        // A rotation while looking can show one file under two names.
        if !newer.iter().any(|(_, seen)| *seen == id) {
            newer.push((file, id));
        }
    }
    newer.reverse();
    newer
}

/// Every line of a rotated file (complete: a last line without its end counts); its length.
fn read_whole(file: &File, i: usize, lines: &mut Vec<Line>) -> io::Result<u64> {
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut &*file, &mut bytes)?;
    let len = bytes.len() as u64;
    let mut partial = Vec::new();
    split_lines(&bytes, &mut partial, |bytes| {
        lines.push(Line { file: i, bytes })
    });
    if !partial.is_empty() {
        lines.push(Line {
            file: i,
            bytes: partial,
        });
    }
    Ok(len)
}

/// How many bytes before the read position are remembered to recognise the file later.
const SEEN: u64 = 64;

/// The last (up to [`SEEN`]) bytes of `file` before `end`.
fn bytes_before(file: &File, end: u64) -> io::Result<Vec<u8>> {
    let from = end.saturating_sub(SEEN);
    let mut seen = vec![0u8; (end - from) as usize];
    match file.read_exact_at(&mut seen, from) {
        Ok(()) => Ok(seen),
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(Vec::new()),
        Err(err) => Err(err),
    }
}

/// Whether the bytes before `offset` are still those read there: a file truncated and written
/// again past the old offset has the same size story as one that only grew, but not the same
/// bytes (each log line starts with its time).
fn still_there(file: &File, offset: u64, seen: &[u8], len: u64) -> io::Result<bool> {
    if len < offset {
        return Ok(false);
    }
    Ok(bytes_before(file, offset)? == seen)
}

#[derive(Default)]
struct Touched {
    names: Vec<String>,
    /// Events were dropped: look at everything.
    all: bool,
}

fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// Appends `bytes` to `partial` and hands out each completed line.
fn split_lines(bytes: &[u8], partial: &mut Vec<u8>, mut line: impl FnMut(Vec<u8>)) {
    let mut rest = bytes;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let mut whole = std::mem::take(partial);
        whole.extend_from_slice(&rest[..end]);
        line(whole);
        rest = &rest[end + 1..];
    }
    partial.extend_from_slice(rest);
}

/// The last `n` whole lines of `file` before `end`, oldest first, and where the last whole
/// line ends (a line still without its `\n` is left for a follower).
pub fn last_lines(file: &File, end: u64, n: usize) -> io::Result<(Vec<Vec<u8>>, u64)> {
    const CHUNK: u64 = 64 * 1024;
    // Chunks from the end backwards, joined once at the end (prepending each would copy the
    // whole tail again for every chunk).
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut start = end;
    // Where the whole lines end: after the last `\n` before `end`.
    let mut whole_end: Option<u64> = None;
    let mut newlines = 0;
    while start > 0 {
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (start - from) as usize];
        file.read_exact_at(&mut chunk, from)?;
        if whole_end.is_none()
            && let Some(at) = chunk.iter().rposition(|&b| b == b'\n')
        {
            whole_end = Some(from + at as u64 + 1);
        }
        newlines += chunk.iter().filter(|&&b| b == b'\n').count();
        chunks.push(chunk);
        start = from;
        // n lines need n+1 line ends, or the start of the file.
        if newlines > n {
            break;
        }
    }
    let Some(whole_end) = whole_end else {
        return Ok((Vec::new(), 0));
    };
    chunks.reverse();
    let tail = chunks.concat();
    let body = &tail[..(whole_end - start) as usize];
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    let mut lines: Vec<Vec<u8>> = body
        .rsplit(|&b| b == b'\n')
        .take(n)
        .map(<[u8]>::to_vec)
        .collect();
    lines.reverse();
    if n == 0 {
        lines.clear();
    }
    Ok((lines, whole_end))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsFd;

    use super::*;

    fn append(path: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .expect("open for append");
        file.write_all(text.as_bytes()).expect("append");
    }

    fn texts(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
            .collect()
    }

    /// A descriptor that never reports an error: the read end of a pipe kept open.
    fn quiet_out() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe().expect("pipe")
    }

    #[test]
    fn last_lines_counts_from_the_end_and_leaves_an_unfinished_line() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("a.log");
        std::fs::write(&path, "one\ntwo\nthree\nfour").expect("write");
        let file = File::open(&path).expect("open");
        let len = file.metadata().expect("stat").len();
        let (lines, end) = last_lines(&file, len, 2).expect("tail");
        assert_eq!(lines, [b"two".to_vec(), b"three".to_vec()]);
        assert_eq!(end, 14);
        let (lines, _) = last_lines(&file, len, 10).expect("tail");
        assert_eq!(lines.len(), 3);
        let (lines, end) = last_lines(&file, len, 0).expect("tail");
        assert!(lines.is_empty());
        assert_eq!(end, 14);
        // Lines longer than the chunk, and many of them.
        let long = "x".repeat(100_000);
        std::fs::write(&path, format!("{long}\n{long}\nlast\n")).expect("write");
        let file = File::open(&path).expect("open");
        let len = file.metadata().expect("stat").len();
        let (lines, end) = last_lines(&file, len, 2).expect("tail");
        assert_eq!(lines, [long.as_bytes().to_vec(), b"last".to_vec()]);
        assert_eq!(end, len);
    }

    #[test]
    fn follows_growth_rotation_truncation_and_new_files() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path();
        let (_read, write) = quiet_out();
        let log = dir.join("a.log");
        append(&log, "old\n");
        let mut follower = Follower::new(dir, |name| name.ends_with(".log")).expect("watch");
        let file = File::open(&log).expect("open");
        let a = follower.add("a.log", Some((file, 4)));
        append(&log, "one\ntw");
        assert_eq!(texts(&follower.wait(write.as_fd()).expect("wait")), ["one"]);
        append(&log, "o\n");
        assert_eq!(texts(&follower.wait(write.as_fd()).expect("wait")), ["two"]);

        // Rotation: a last line to the old file, rename, a new file.
        append(&log, "before\n");
        std::fs::rename(&log, dir.join("a.log.1")).expect("rotate");
        append(&log, "after\n");
        let mut seen = texts(&follower.wait(write.as_fd()).expect("wait"));
        while seen.len() < 2 {
            seen.extend(texts(&follower.wait(write.as_fd()).expect("wait")));
        }
        assert_eq!(seen, ["before", "after"]);

        // Two rotations before the follower looks: the file between is read too.
        append(&log, "x1\n");
        std::fs::rename(dir.join("a.log.1"), dir.join("a.log.2")).expect("rotate");
        std::fs::rename(&log, dir.join("a.log.1")).expect("rotate");
        append(&log, "x2\n");
        std::fs::rename(dir.join("a.log.1"), dir.join("a.log.2")).expect("rotate");
        std::fs::rename(&log, dir.join("a.log.1")).expect("rotate");
        append(&log, "x3\n");
        let mut seen = texts(&follower.wait(write.as_fd()).expect("wait"));
        while seen.len() < 3 {
            seen.extend(texts(&follower.wait(write.as_fd()).expect("wait")));
        }
        assert_eq!(seen, ["x1", "x2", "x3"]);

        // Truncation, then a line.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .expect("open")
            .set_len(0)
            .expect("truncate");
        append(&log, "fresh\n");
        assert_eq!(
            texts(&follower.wait(write.as_fd()).expect("wait")),
            ["fresh"]
        );

        // A new file is picked up from its start; another name is not.
        append(&dir.join("other.txt"), "ignored\n");
        append(&dir.join("b.log"), "b1\n");
        let lines = follower.wait(write.as_fd()).expect("wait");
        assert_eq!(texts(&lines), ["b1"]);
        assert_eq!(follower.name(lines[0].file), "b.log");
        assert_ne!(lines[0].file, a);
    }

    #[test]
    fn a_cut_back_partial_write_is_not_a_truncation() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path();
        let (_read, write) = quiet_out();
        let log = dir.join("a.log");
        append(&log, "");
        let mut follower = Follower::new(dir, |_| false).expect("watch");
        follower.add("a.log", None);
        append(&log, "one\nhalf");
        assert_eq!(texts(&follower.wait(write.as_fd()).expect("wait")), ["one"]);
        // The writer cuts its partial line back and writes it again, whole.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .expect("open")
            .set_len(4)
            .expect("cut back");
        append(&log, "whole\n");
        assert_eq!(
            texts(&follower.wait(write.as_fd()).expect("wait")),
            ["whole"]
        );
    }

    #[test]
    fn a_closed_reader_ends_the_wait() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let (read, write) = quiet_out();
        let mut follower = Follower::new(tmp.path(), |_| true).expect("watch");
        drop(read);
        let err = follower.wait(write.as_fd()).expect_err("broken pipe");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
