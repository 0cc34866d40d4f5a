//! The foreground view of `hangwatch up`: every service's output, interleaved, each line
//! prefixed with the service's name in a colour of its own, and hangwatch's own events between
//! them (as foreman and honcho show it).
//!
//! # Theory of operation
//!
//! The daemon's event loop formats each line and appends it to a queue; a writer thread copies
//! the queue to hangwatch's stdout with plain blocking writes. The event loop never writes to
//! the terminal itself: a paused terminal (Ctrl-S), or a pager that stopped reading, would
//! otherwise stop every deadline and every restart.
//!
//! The queue holds at most [`QUEUE_LIMIT`] bytes, counting the batch being written. When it is
//! full, service lines are dropped and counted; once it has drained to half, lines are taken
//! again, and a notice `hangwatch | (N lines dropped: output not keeping up)` marks the gap
//! (written at the latest when the queue is empty). hangwatch's own events may use twice the
//! room, so they survive a flood of service output. Nothing is lost for good: every line is
//! also in the service's log file and every event in the event log.
//!
//! If stdout is closed (`EPIPE`, as with `hangwatch up | head`), printing stops quietly and
//! the daemon runs on.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::Stream;

/// The most bytes waiting for the terminal before service lines are dropped.
pub const QUEUE_LIMIT: usize = 1024 * 1024;

/// The name in front of hangwatch's own lines.
const OWN_NAME: &str = "hangwatch";

/// Foreground colours for service names (SGR codes): cyan, yellow, green, magenta, blue and
/// bright cyan. Red is left out: it reads as an error.
const PALETTE: [u8; 6] = [36, 33, 32, 35, 34, 96];

/// Where the writer thread writes.
pub type Sink = Box<dyn Write + Send>;

/// The terminal (or whatever hangwatch's stdout is), fed by a writer thread.
#[derive(Debug)]
pub struct Console {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: bytes queued, or the console dropped.
    wake: Condvar,
    /// Wakes [`Console::flush`]: the queue emptied, or stdout broke.
    drained: Condvar,
    style: Style,
}

#[derive(Debug, Default)]
struct State {
    queued: Vec<u8>,
    /// Bytes taken by the writer and not yet written.
    in_flight: usize,
    /// Lines dropped since the last notice.
    unnoted: u64,
    /// Lines dropped in all.
    dropped: u64,
    /// Dropping until the queue drains to half (so that a slow reader sees one gap, not one
    /// gap per line).
    dropping: bool,
    /// The writer stopped (stdout failed); nothing is printed any more.
    broken: bool,
    /// The console was dropped: the writer exits once the queue is empty.
    closed: bool,
}

#[derive(Debug, Clone, Copy)]
struct Style {
    color: bool,
    name_width: usize,
}

impl Console {
    /// A console on hangwatch's stdout. `color` adds ANSI colours (for a terminal);
    /// `name_width` is the width names are padded to (the longest service name, say).
    ///
    /// If stdout cannot be duplicated (it is closed), the console prints nothing.
    #[must_use]
    pub fn new(color: bool, name_width: usize) -> Console {
        match crate::liveness::output::own_stream(io::stdout().as_fd()) {
            Ok(sink) => Console::with_sink(sink, color, name_width),
            Err(err) => {
                tracing::warn!(error = %err, "failed to duplicate stdout; not printing output");
                let console = Console::detached(color, name_width);
                lock(&console.shared.state).broken = true;
                console
            }
        }
    }

    /// A console writing to `sink` instead of stdout.
    #[must_use]
    pub fn with_sink(sink: Sink, color: bool, name_width: usize) -> Console {
        let console = Console::detached(color, name_width);
        let shared = Arc::clone(&console.shared);
        let spawned = std::thread::Builder::new()
            .name("hangwatch-console".into())
            .spawn(move || write_queued(&shared, sink));
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "failed to start the console thread; not printing output");
            lock(&console.shared.state).broken = true;
        }
        console
    }

    fn detached(color: bool, name_width: usize) -> Console {
        Console {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
                drained: Condvar::new(),
                style: Style { color, name_width },
            }),
        }
    }

    /// Prints a line of `service`'s output (without its newline), or drops it if the terminal
    /// is not keeping up.
    pub fn line(&self, service: &str, stream: Stream, line: &[u8]) {
        let mut out = Vec::with_capacity(self.shared.style.name_width + line.len() + 24);
        self.shared
            .style
            .service_line(&mut out, service, stream, line);
        self.enqueue(&out, false);
    }

    /// Prints one of hangwatch's own lines (`hangwatch | text`, bold); each line of a
    /// multi-line `text` gets the prefix.
    pub fn event(&self, text: &str) {
        let mut out = Vec::with_capacity(self.shared.style.name_width + text.len() + 24);
        for line in text.lines() {
            self.shared.style.own_line(&mut out, line);
        }
        self.enqueue(&out, true);
    }

    /// Prints `text` and a newline as they are (the JSON lines of `hangwatch up --json`), with
    /// the room of hangwatch's own lines.
    pub fn raw(&self, text: &str) {
        let mut out = Vec::with_capacity(text.len() + 1);
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
        self.enqueue(&out, true);
    }

    /// Waits, at most `limit`, until everything queued was written. `false` if time ran out or
    /// stdout failed. Blocks the calling thread: for the end of the daemon only.
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut state = lock(&self.shared.state);
        loop {
            if state.broken {
                return false;
            }
            if state.queued.is_empty() && state.in_flight == 0 && state.unnoted == 0 {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            state = self
                .shared
                .drained
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Lines dropped so far because the terminal was not keeping up.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        lock(&self.shared.state).dropped
    }

    fn enqueue(&self, bytes: &[u8], own: bool) {
        let mut state = lock(&self.shared.state);
        if state.broken || bytes.is_empty() {
            return;
        }
        let pending = state.queued.len() + state.in_flight;
        let room = if own {
            2 * QUEUE_LIMIT
        } else if state.dropping {
            QUEUE_LIMIT / 2
        } else {
            QUEUE_LIMIT
        };
        if pending + bytes.len() > room {
            state.dropping |= !own;
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            state.unnoted += lines;
            state.dropped += lines;
            return;
        }
        if !own {
            state.dropping = false;
        }
        self.shared.note_dropped(&mut state);
        state.queued.extend_from_slice(bytes);
        drop(state);
        self.shared.wake.notify_one();
    }
}

impl Drop for Console {
    /// Lets the writer finish what is queued and exit; does not wait for it.
    fn drop(&mut self) {
        lock(&self.shared.state).closed = true;
        self.shared.wake.notify_one();
    }
}

impl Shared {
    /// Queues the notice of lines dropped since the last one, if any were.
    fn note_dropped(&self, state: &mut State) {
        if state.unnoted > 0 {
            let text = format!(
                "({} lines dropped: output not keeping up)",
                std::mem::take(&mut state.unnoted)
            );
            self.style.own_line(&mut state.queued, &text);
        }
    }
}

impl Style {
    fn service_line(&self, out: &mut Vec<u8>, service: &str, stream: Stream, line: &[u8]) {
        if self.color {
            let _ = write!(out, "\x1b[{}m", color_of(service));
            self.name(out, service);
            out.extend_from_slice(match stream {
                Stream::Out => b"\x1b[0m | ",
                // A red bar marks standard error, leaving the text itself as it was.
                Stream::Err => b"\x1b[0m \x1b[31m|\x1b[0m ",
            });
            out.extend_from_slice(line);
            // A program's own colour codes must not run into the next line's prefix.
            if line.contains(&0x1b) {
                out.extend_from_slice(b"\x1b[0m");
            }
        } else {
            self.name(out, service);
            out.extend_from_slice(b" | ");
            out.extend_from_slice(line);
        }
        out.push(b'\n');
    }

    fn own_line(&self, out: &mut Vec<u8>, text: &str) {
        if self.color {
            out.extend_from_slice(b"\x1b[1m");
        }
        self.name(out, OWN_NAME);
        out.extend_from_slice(b" | ");
        out.extend_from_slice(text.as_bytes());
        if self.color {
            out.extend_from_slice(b"\x1b[0m");
        }
        out.push(b'\n');
    }

    fn name(&self, out: &mut Vec<u8>, name: &str) {
        out.extend_from_slice(name.as_bytes());
        let width = name.chars().count();
        out.extend(std::iter::repeat_n(
            b' ',
            self.name_width.saturating_sub(width),
        ));
    }
}

/// The colour (an SGR code) of a service's name: the same in every run and in `hangwatch logs`
/// (FNV-1a of the name, not std's hasher, whose output may change between Rust releases).
#[must_use]
pub fn color_of(service: &str) -> u8 {
    let hash = service
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    PALETTE[(hash % PALETTE.len() as u64) as usize]
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state stays consistent at every unlock, so a panic elsewhere does not spoil it.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer thread: copies batches from the queue to `sink` until the console is dropped
/// and the queue is empty, or the sink fails.
fn write_queued(shared: &Shared, mut sink: Sink) {
    // Two buffers take turns: the queue fills one while the other is written.
    let mut batch = Vec::new();
    loop {
        {
            let mut state = lock(&shared.state);
            loop {
                if state.queued.is_empty() {
                    // Drained: the gap, if there was one, is noted now.
                    shared.note_dropped(&mut state);
                }
                if !state.queued.is_empty() {
                    break;
                }
                shared.drained.notify_all();
                if state.closed {
                    return;
                }
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            std::mem::swap(&mut state.queued, &mut batch);
            state.in_flight = batch.len();
        }
        let result = sink.write_all(&batch).and_then(|()| sink.flush());
        batch.clear();
        let mut state = lock(&shared.state);
        state.in_flight = 0;
        if let Err(err) = result {
            if err.kind() == io::ErrorKind::BrokenPipe {
                tracing::debug!("stdout was closed; no more output is printed");
            } else {
                tracing::warn!(error = %err, "failed to write to stdout; no more output is printed");
            }
            state.broken = true;
            state.queued = Vec::new();
            drop(state);
            shared.drained.notify_all();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::OwnedFd;

    use nix::fcntl::OFlag;

    use std::fs::File;
    use std::os::fd::AsFd;

    use super::*;

    fn pipe() -> (File, OwnedFd) {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        (File::from(read), write)
    }

    fn console_on(write: OwnedFd, color: bool, width: usize) -> Console {
        let sink = crate::liveness::output::own_stream(write.as_fd()).expect("duplicate");
        Console::with_sink(sink, color, width)
    }

    /// Everything the console writes, once it is dropped and its writer has finished.
    fn read_all(mut read: File) -> String {
        let mut text = String::new();
        read.read_to_string(&mut text).expect("read");
        text
    }

    #[test]
    fn plain_lines_are_prefixed_and_padded() {
        let (read, write) = pipe();
        let console = console_on(write, false, 6);
        console.line("web", Stream::Out, b"listening");
        console.line("worker", Stream::Err, b"oops");
        console.event("web started\nsecond line");
        assert!(console.flush(Duration::from_secs(5)));
        drop(console);
        assert_eq!(
            read_all(read),
            "web    | listening\n\
             worker | oops\n\
             hangwatch | web started\n\
             hangwatch | second line\n"
        );
    }

    #[test]
    fn colours_are_stable_per_service_and_own_lines_are_bold() {
        let (read, write) = pipe();
        let console = console_on(write, true, 4);
        console.line("db", Stream::Out, b"ready");
        console.line("db", Stream::Err, b"\x1b[33mwarn");
        console.event("up");
        drop(console);
        let c = color_of("db");
        assert_eq!(
            read_all(read),
            format!(
                "\x1b[{c}mdb  \x1b[0m | ready\n\
                 \x1b[{c}mdb  \x1b[0m \x1b[31m|\x1b[0m \x1b[33mwarn\x1b[0m\n\
                 \x1b[1mhangwatch | up\x1b[0m\n"
            )
        );
        assert_eq!(color_of("db"), color_of("db"));
        let used: std::collections::HashSet<_> = ["api", "db", "web", "worker", "cache", "queue"]
            .iter()
            .map(|name| color_of(name))
            .collect();
        assert!(
            used.len() >= 3,
            "names should spread over the palette: {used:?}"
        );
    }

    #[test]
    fn a_reader_that_stops_reading_never_blocks_the_caller() {
        let (read, write) = pipe();
        let console = console_on(write, false, 3);
        let text = vec![b'x'; 1000];
        let total = 5000;
        let mut slowest = Duration::ZERO;
        let started = Instant::now();
        for _ in 0..total {
            let before = Instant::now();
            console.line("svc", Stream::Out, &text);
            slowest = slowest.max(before.elapsed());
        }
        let elapsed = started.elapsed();
        println!("{total} lines queued in {elapsed:?}, slowest call {slowest:?}");
        // 5 MB against a 1 MiB queue and a 64 KiB pipe that nobody reads.
        assert!(console.dropped() > 3000, "dropped {}", console.dropped());
        // A call that blocked on the pipe would wait forever (nobody reads it); a loaded
        // machine may still preempt one for a few hundred milliseconds, which is not that.
        assert!(
            slowest < Duration::from_secs(2),
            "a call waited {slowest:?}"
        );
        console.event("still here");

        // Now read: what was queued arrives, then the notice of the gap.
        let reader = std::thread::spawn(move || read_all(read));
        assert!(console.flush(Duration::from_secs(10)), "drained");
        let dropped = console.dropped();
        drop(console);
        let out = reader.join().expect("reader");
        let shown = out.lines().filter(|l| l.starts_with("svc | x")).count() as u64;
        let noted: u64 = out
            .lines()
            .filter_map(|l| l.strip_prefix("hangwatch | ("))
            .map(|l| {
                l.split(' ')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .expect("a count")
            })
            .sum();
        assert_eq!(shown + dropped, total);
        assert_eq!(noted, dropped, "every dropped line is noted");
        assert!(out.contains("hangwatch | still here\n"));
        assert!(out.contains(" lines dropped: output not keeping up)\n"));
    }

    #[test]
    fn a_closed_stdout_stops_printing_quietly() {
        let (read, write) = pipe();
        drop(read);
        let console = console_on(write, false, 3);
        console.line("svc", Stream::Out, b"lost");
        // The writer meets EPIPE (SIGPIPE is ignored in Rust programs) and gives up.
        assert!(!console.flush(Duration::from_secs(5)));
        let started = Instant::now();
        for _ in 0..10_000 {
            console.line("svc", Stream::Out, b"more");
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(!console.flush(Duration::from_secs(1)));
    }
}
