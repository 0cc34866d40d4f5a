//! The event log, `events.jsonl`: what the supervisor did and saw, one JSON record per line.
//!
//! Each record is written with one `write(2)` on a file opened `O_APPEND`, so it is visible to
//! `tail -f` and `hangwatch events -f` at once and a reader never sees two records interleaved.
//! A reader must still treat a last line without its `\n` as not yet written.
//!
//! Durability without blocking: after each append, a background thread is asked to
//! `fdatasync` the file. Requests that arrive while a sync runs are served by one more sync, so
//! a burst of events costs two syncs, not one per event, and the event loop never waits for the
//! disk. [`EventLog::close`] syncs what is left and waits for it.
//!
//! # Rotation
//!
//! Before a record would make the file larger than `max_size`, `events.jsonl` becomes
//! `events.jsonl.1`, `.1` becomes `.2` and so on up to `keep` (the oldest is removed; with
//! `keep = 0` the file itself is), and a new `events.jsonl` is created. The rename falls
//! between two appends, so every record is whole in one file, and nothing is written to the
//! old file after it: a reader that follows the name (`tail -F`), reading its open file to the
//! end once the name points elsewhere and then the new file from its start, sees every record
//! once. The old file is handed to the sync thread, which syncs it with the new one (and the
//! directory, for the renames) before it counts the records as durable. A rotation that fails
//! is logged and tried again at the next record; the record is written either way.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::SystemTime;

use hangwatch_protocol::event::{Event, EventRecord};

/// A record of `event`, stamped with the current time.
#[must_use]
pub fn record(service: Option<&str>, event: Event) -> EventRecord {
    EventRecord {
        at: super::timestamp(SystemTime::now()),
        service: service.map(str::to_owned),
        event,
    }
}

/// The open event log.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    writer: Mutex<Writer>,
    sync: Arc<Durability>,
    syncer: Option<JoinHandle<()>>,
}

/// The file appends go to.
#[derive(Debug)]
struct Writer {
    file: Arc<File>,
    /// Its size as far as this writer knows (it is the only writer).
    size: u64,
}

#[derive(Debug, Default)]
struct Durability {
    state: Mutex<SyncState>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct SyncState {
    /// The file appends go to now (`None` only before the log is opened).
    current: Option<Arc<File>>,
    /// Files rotated away whose last records may not be on disk yet.
    retired: Vec<Arc<File>>,
    /// The directory changed (a file was created or renamed) and is not synced yet.
    dir_dirty: bool,
    /// Appends so far.
    appended: u64,
    /// Appends known to be on disk.
    synced: u64,
    /// How many times the file was synced (for tests of the coalescing).
    syncs: u64,
    /// The inode of the file synced last (for tests of rotation).
    #[cfg(test)]
    last_synced: Option<u64>,
    /// The last sync failure not yet reported.
    error: Option<io::Error>,
    closing: bool,
}

impl SyncState {
    fn pending(&self) -> bool {
        self.appended > self.synced || !self.retired.is_empty() || self.dir_dirty
    }
}

impl EventLog {
    /// Opens (or creates) the event log at `path` for appending, rotated at `max_size` bytes
    /// with `keep` older files (see the module documentation).
    pub fn open(path: &Path, max_size: u64, keep: u32) -> io::Result<EventLog> {
        let existed = path.exists();
        let (file, size) = open_append(path)?;
        let file = Arc::new(file);
        let sync = Arc::new(Durability::default());
        {
            let mut state = lock(&sync.state);
            state.current = Some(Arc::clone(&file));
            // A new file's directory entry must reach the disk too, once.
            state.dir_dirty = !existed;
        }
        let for_thread = Arc::clone(&sync);
        let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
        let syncer = std::thread::Builder::new()
            .name("hangwatch-events".into())
            .spawn(move || sync_loop(&for_thread, &dir))?;
        Ok(EventLog {
            path: path.to_owned(),
            max_size,
            keep,
            writer: Mutex::new(Writer { file, size }),
            sync,
            syncer: Some(syncer),
        })
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` as one line and asks for it to be synced in the background.
    ///
    /// Fails if the line could not be written (a full disk), or reports a failure of an
    /// earlier background sync.
    pub fn append(&self, record: &EventRecord) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let len = line.len() as u64;
        let mut writer = lock(&self.writer);
        if writer.size > 0 && writer.size + len > self.max_size {
            if let Err(err) = self.rotate(&mut writer) {
                tracing::warn!(error = %err, path = %self.path.display(), "failed to rotate the event log");
            }
        }
        // One write(2) in O_APPEND mode: the line lands whole at the end. A regular file takes
        // a short write only when the disk is full, and then the part is cut off again.
        super::logfile::write_whole(&writer.file, &line)?;
        writer.size += len;
        drop(writer);
        let mut state = lock(&self.sync.state);
        state.appended += 1;
        let error = state.error.take();
        drop(state);
        self.sync.wake.notify_one();
        error.map_or(Ok(()), Err)
    }

    /// Moves the current file aside and starts a new one; the old one goes to the sync thread.
    fn rotate(&self, writer: &mut Writer) -> io::Result<()> {
        // Gone from its name already when an earlier rotation could not create the new file:
        // then only the new file is missing.
        if self.path.exists() {
            super::rotation::shift(&self.path, self.keep)?;
        }
        let (file, size) = match open_append(&self.path) {
            Ok(opened) => opened,
            Err(err) => {
                // The old file, renamed, takes the records until a new one can be made.
                lock(&self.sync.state).dir_dirty = true;
                return Err(err);
            }
        };
        let file = Arc::new(file);
        let old = std::mem::replace(&mut writer.file, Arc::clone(&file));
        writer.size = size;
        let mut state = lock(&self.sync.state);
        state.retired.push(old);
        state.current = Some(file);
        state.dir_dirty = true;
        Ok(())
    }

    /// Syncs what was appended and stops the background thread. Blocks until the disk has it.
    pub fn close(mut self) -> io::Result<()> {
        self.stop();
        match self.syncer.take().map(JoinHandle::join) {
            Some(Err(_panicked)) => Err(io::Error::other("the event log's sync thread panicked")),
            _ => lock(&self.sync.state).error.take().map_or(Ok(()), Err),
        }
    }

    #[cfg(test)]
    fn syncs(&self) -> (u64, u64) {
        let state = lock(&self.sync.state);
        (state.syncs, state.synced)
    }

    fn stop(&self) {
        lock(&self.sync.state).closing = true;
        self.sync.wake.notify_one();
    }
}

impl Drop for EventLog {
    /// Without [`EventLog::close`], the thread still syncs what is left, but nobody waits.
    fn drop(&mut self) {
        self.stop();
    }
}

fn open_append(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().append(true).create(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

fn sync_loop(sync: &Durability, dir: &Path) {
    let mut state = lock(&sync.state);
    loop {
        if state.pending() {
            let target = state.appended;
            let retired = std::mem::take(&mut state.retired);
            let current = state.current.clone();
            let dir_dirty = std::mem::take(&mut state.dir_dirty);
            drop(state);
            // The files rotated away first: their records are older.
            let mut result = retired
                .iter()
                .chain(current.as_ref())
                .try_for_each(|file| file.sync_data());
            if dir_dirty && result.is_ok() {
                result = File::open(dir).and_then(|dir| dir.sync_all());
            }
            state = lock(&sync.state);
            state.syncs += 1;
            #[cfg(test)]
            {
                use std::os::unix::fs::MetadataExt;
                state.last_synced = current
                    .as_ref()
                    .and_then(|file| file.metadata().ok())
                    .map(|meta| meta.ino());
            }
            match result {
                Ok(()) => state.synced = target,
                Err(err) => {
                    tracing::warn!(error = %err, "failed to sync the event log");
                    // Counted as synced so that a broken disk is not retried in a tight loop;
                    // the next append tries again.
                    state.synced = target;
                    state.error = Some(err);
                }
            }
            continue;
        }
        if state.closing {
            return;
        }
        state = sync
            .wake
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::{Duration, Instant};

    use hangwatch_protocol::event::EVENT_VERSION;

    use super::*;

    /// A size no test reaches unless it means to rotate.
    const MAX: u64 = 1 << 30;

    fn started(pid: i32) -> Event {
        Event::Started { pid, restarts: 0 }
    }

    #[test]
    fn records_parse_back() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("events.jsonl");
        let log = EventLog::open(&path, MAX, 3).expect("open");
        let up = record(
            None,
            Event::Up {
                version: EVENT_VERSION,
                pid: 1,
                config: "hangwatch.toml".into(),
                services: 2,
            },
        );
        let web = record(Some("web"), started(42));
        log.append(&up).expect("append");
        log.append(&web).expect("append");
        log.close().expect("close");
        let text = std::fs::read_to_string(&path).expect("read");
        let back: Vec<EventRecord> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("parse"))
            .collect();
        assert_eq!(back, [up, web]);
        assert!(text.ends_with('\n'));
        // The stamp is RFC 3339 UTC with milliseconds.
        let at = &back[0].at;
        assert!(
            at.len() == 24 && at.ends_with('Z') && at.as_bytes()[19] == b'.',
            "{at}"
        );
    }

    #[test]
    fn a_full_disk_is_an_error_of_append() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("events.jsonl");
        std::os::unix::fs::symlink("/dev/full", &path).expect("symlink");
        let log = EventLog::open(&path, MAX, 3).expect("open");
        let err = log.append(&record(None, started(1))).expect_err("no space");
        assert_eq!(err.raw_os_error(), Some(nix::errno::Errno::ENOSPC as i32));
        drop(log);
    }

    #[test]
    fn reopening_appends() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("events.jsonl");
        for pid in [1, 2] {
            let log = EventLog::open(&path, MAX, 3).expect("open");
            log.append(&record(Some("a"), started(pid)))
                .expect("append");
            log.close().expect("close");
        }
        assert_eq!(
            std::fs::read_to_string(&path)
                .expect("read")
                .lines()
                .count(),
            2
        );
    }

    #[test]
    fn syncs_are_coalesced_and_close_waits_for_the_last() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let log = EventLog::open(&tmp.path().join("events.jsonl"), MAX, 3).expect("open");
        let burst = 2000;
        let started_at = Instant::now();
        for pid in 0..burst {
            log.append(&record(Some("svc"), started(pid)))
                .expect("append");
        }
        let took = started_at.elapsed();
        let (syncs, _) = log.syncs();
        println!("{burst} appends in {took:?}, {syncs} syncs so far");
        assert!(syncs < u64::from(burst.unsigned_abs()) / 2, "{syncs} syncs");
        let sync = Arc::clone(&log.sync);
        log.close().expect("close");
        let state = lock(&sync.state);
        assert_eq!(state.synced, u64::from(burst.unsigned_abs()));
    }

    #[test]
    fn a_reader_sees_only_whole_lines() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("events.jsonl");
        let log = EventLog::open(&path, MAX, 3).expect("open");
        let total = 3000;
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let path = path.clone();
            let done = Arc::clone(&done);
            // Follows the file like `tail -f`, parsing each line as soon as its `\n` is there.
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut file = File::open(&path).expect("open for reading");
                let mut pending = Vec::new();
                let mut seen = 0;
                let mut buf = [0u8; 4096];
                loop {
                    assert!(Instant::now() < deadline, "reader timed out at {seen}");
                    let n = file.read(&mut buf).expect("read");
                    if n == 0 {
                        if done.load(std::sync::atomic::Ordering::Acquire) && seen == total {
                            return seen;
                        }
                        std::thread::yield_now();
                        continue;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        let record: EventRecord =
                            serde_json::from_slice(&line).expect("a whole record");
                        assert_eq!(record.service.as_deref(), Some("svc"));
                        seen += 1;
                    }
                }
            })
        };
        for pid in 0..total {
            // Vary the length so that lines straddle the reader's buffer.
            let event = if pid % 7 == 0 {
                Event::StartFailed {
                    error: "x".repeat(pid as usize % 5000),
                }
            } else {
                started(pid)
            };
            log.append(&record(Some("svc"), event)).expect("append");
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        assert_eq!(reader.join().expect("reader"), total);
        log.close().expect("close");
    }

    fn inode(path: &Path) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|meta| meta.ino())
    }

    fn rotated(path: &Path, n: u64) -> PathBuf {
        crate::state::rotation::rotated(path, n)
    }

    /// The `pid`s of the `started` records of the file at `path`, each line checked whole.
    fn pids_in(path: &Path) -> Vec<i32> {
        let text = std::fs::read_to_string(path).expect("read");
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "ends in a whole line"
        );
        text.lines()
            .map(|line| {
                let record: EventRecord = serde_json::from_str(line).expect("a whole record");
                match record.event {
                    Event::Started { pid, .. } => pid,
                    other => panic!("unexpected {other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn rotation_keeps_the_newest_files_of_whole_records_and_syncs_the_new_file() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("events.jsonl");
        let max = 1000;
        let log = EventLog::open(&path, max, 3).expect("open");
        let total = 300;
        for pid in 0..total {
            log.append(&record(Some("svc"), started(pid)))
                .expect("append");
        }
        let sync = Arc::clone(&log.sync);
        log.close().expect("close");
        assert!(!rotated(&path, 4).exists(), "at most 3 older files");
        let mut pids = Vec::new();
        for file in [
            rotated(&path, 3),
            rotated(&path, 2),
            rotated(&path, 1),
            path.clone(),
        ] {
            let size = std::fs::metadata(&file).expect("rotated file").len();
            assert!(size <= max, "{} has {size} bytes", file.display());
            pids.extend(pids_in(&file));
        }
        // The newest records, in order, none missing between files.
        let first = total - i32::try_from(pids.len()).expect("few");
        assert_eq!(pids, (first..total).collect::<Vec<_>>());
        let state = lock(&sync.state);
        assert_eq!(state.synced, u64::from(total.unsigned_abs()));
        assert!(state.retired.is_empty(), "every old file synced and let go");
        assert_eq!(
            state.last_synced,
            inode(&path),
            "the sync follows the new file"
        );
    }

    #[test]
    fn reopening_a_full_log_rotates_first_and_keep_zero_keeps_no_old_file() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("events.jsonl");
        let log = EventLog::open(&path, MAX, 0).expect("open");
        for pid in 0..10 {
            log.append(&record(Some("svc"), started(pid)))
                .expect("append");
        }
        log.close().expect("close");
        let size = std::fs::metadata(&path).expect("log").len();
        let log = EventLog::open(&path, size, 0).expect("reopen");
        log.append(&record(Some("svc"), started(10)))
            .expect("append");
        log.close().expect("close");
        assert_eq!(pids_in(&path), [10]);
        assert!(!rotated(&path, 1).exists());
    }

    #[test]
    fn a_reader_following_the_name_sees_every_record_once() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("events.jsonl");
        let log = EventLog::open(&path, 2000, 2).expect("open");
        let total = 2000;
        // The inode of the file the reader has open: the writer lets the reader open each new
        // file before it rotates again, as `tail -F` needs (a reader that sleeps through two
        // rotations misses the file between them, whatever the writer does).
        let reading = Arc::new(AtomicU64::new(0));
        let reader = {
            let path = path.clone();
            let reading = Arc::clone(&reading);
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                let open = |path: &Path| {
                    let file = File::open(path).expect("open by name");
                    let ino = {
                        use std::os::unix::fs::MetadataExt;
                        file.metadata().expect("stat").ino()
                    };
                    reading.store(ino, std::sync::atomic::Ordering::Release);
                    (file, ino)
                };
                let (mut file, mut ino) = open(&path);
                let mut pending = Vec::new();
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    assert!(
                        Instant::now() < deadline,
                        "reader timed out at {}",
                        seen.len()
                    );
                    let n = file.read(&mut buf).expect("read");
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        let record: EventRecord =
                            serde_json::from_slice(&line).expect("a whole record");
                        let Event::Started { pid, .. } = record.event else {
                            panic!("unexpected record");
                        };
                        seen.push(pid);
                    }
                    if n > 0 {
                        continue;
                    }
                    if seen.len() == total {
                        return seen;
                    }
                    // At the end of the file: if the name points elsewhere now, this file is
                    // complete (read it to the end once more), and the new one begins.
                    match inode(&path) {
                        Some(now) if now != ino => {
                            let mut rest = Vec::new();
                            file.read_to_end(&mut rest).expect("read the rest");
                            pending.extend_from_slice(&rest);
                            if pending.contains(&b'\n') {
                                continue;
                            }
                            assert!(pending.is_empty(), "a record split by the rotation");
                            (file, ino) = open(&path);
                        }
                        _ => std::thread::yield_now(),
                    }
                }
            })
        };
        let reader_opened = |file: Option<u64>| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Some(reading.load(Ordering::Acquire)) != file {
                assert!(
                    Instant::now() < deadline,
                    "the reader never opened {file:?}"
                );
                std::thread::yield_now();
            }
        };
        let mut current = inode(&path);
        reader_opened(current);
        for pid in 0..i32::try_from(total).expect("small") {
            log.append(&record(Some("svc"), started(pid)))
                .expect("append");
            let now = inode(&path);
            if now != current {
                current = now;
                reader_opened(current);
            }
        }
        let seen = reader.join().expect("reader");
        log.close().expect("close");
        assert_eq!(
            seen,
            (0..i32::try_from(total).expect("small")).collect::<Vec<_>>()
        );
        assert!(rotated(&path, 2).exists(), "the log rotated");
    }
}
