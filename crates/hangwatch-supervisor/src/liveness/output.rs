//! Output: watching the bytes a program writes to stdout and stderr, and passing them on
//! unchanged, without ever making the program wait for hangwatch.
//!
//! # Theory of operation
//!
//! [`capture`] connects the program's stdout and stderr to pipes (or to a pseudo-terminal) whose
//! other ends hangwatch holds. [`OutputPump::activity`] runs in the event loop: it waits until
//! an end is readable, reads up to 64 KiB at a time, reports how many bytes arrived (the
//! heartbeat for output-silence detection) and hands each chunk to a writer thread, one per
//! stream, which copies it to hangwatch's own stdout or stderr.
//!
//! Why a writer thread: hangwatch's stdout may be slow (a slow terminal, a consumer that reads
//! slowly, a pager). A blocking write from the event loop would stall deadlines and signals, and
//! setting `O_NONBLOCK` on hangwatch's stdout is not an option because that flag lives on the
//! open file description shared with the parent shell, which would then see `EAGAIN` itself.
//! A detached thread doing plain blocking writes has neither problem.
//!
//! Why drop instead of block: a program writing into a full pipe blocks in `write()`, which looks
//! exactly like a hang and would make hangwatch cause the stall it is meant to detect. So the
//! queue between the event loop and each writer thread holds at most [`QUEUE_LIMIT`] bytes;
//! when it is full, the chunk just read is dropped and counted ([`OutputPump::dropped`],
//! [`OutputStats::bytes_dropped`]). Reading never stops, so the program never waits on
//! hangwatch, and memory stays bounded. Bytes that cannot be written because hangwatch's own
//! output failed (for example `EPIPE` after `hangwatch run … | head`) are counted as dropped too.
//!
//! # Caveats
//!
//! - **Block buffering.** C stdio and Python switch stdout to block buffering when it is a pipe,
//!   so a program's output may reach hangwatch only every 4–8 KiB or at exit, and a working
//!   program can look silent. That is why [`OutputMode::for_stdout`] picks a pseudo-terminal when
//!   hangwatch's own stdout is a terminal: the program then line-buffers as it would without
//!   hangwatch.
//! - **A pseudo-terminal merges stdout and stderr.** Both of the program's fds are the pty's
//!   slave, so everything is read from one master and written to hangwatch's stdout (and
//!   counted in [`Activity::stdout_bytes`]). The line discipline also applies its output
//!   processing (`\n` becomes `\r\n`), which is what a terminal would show anyway. The pty is
//!   not made the program's controlling terminal; a program that opens `/dev/tty` gets
//!   hangwatch's.
//! - **EOF is not exit.** A grandchild that inherited the ends keeps them open after the program
//!   exited; the caller must bound its wait for [`Activity::closed`].

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use rustix::pty::OpenptFlags;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};

use super::tail::{LastOutput, OutputTail};

/// The most bytes queued for one of hangwatch's own output streams before more are dropped.
/// A stream's queue allocates at most about twice this.
pub const QUEUE_LIMIT: usize = 8 * 1024 * 1024;

/// The size of one read, and so the largest chunk queued.
const READ_SIZE: usize = 64 * 1024;

/// Reads done by one [`OutputPump::activity`] call before it returns, so that a program writing
/// without pause cannot keep the caller's loop from its other events.
const READS_PER_CALL: usize = 16;

/// Where a writer thread copies a stream to: hangwatch's own stdout or stderr, or anything else
/// (a test's slow sink, later a log file).
pub type Sink = Box<dyn Write + Send>;

/// How the program's stdout/stderr are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutputMode {
    /// The program writes to hangwatch's own stdout and stderr; hangwatch sees nothing.
    Inherit,
    /// One pipe per stream; stdout and stderr stay apart.
    Pipes,
    /// A pseudo-terminal for both streams, which merge (see the module's caveats).
    Pty,
}

impl OutputMode {
    /// [`OutputMode::Pipes`] when hangwatch's own stdout and stderr are both pipes (a CI
    /// runner, `| tee`): the program then writes into a pipe either way, so reading its output
    /// (to keep its last lines for an incident) and passing it on changes nothing it can see.
    /// [`OutputMode::Inherit`] otherwise (a terminal, a file, a socket), which only an
    /// explicit choice changes.
    #[must_use]
    pub fn when_already_piped() -> Self {
        let is_pipe = |fd: std::os::fd::BorrowedFd<'_>| {
            use nix::sys::stat::{SFlag, fstat};
            fstat(fd).is_ok_and(|st| st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFIFO.bits())
        };
        if is_pipe(io::stdout().as_fd()) && is_pipe(io::stderr().as_fd()) {
            OutputMode::Pipes
        } else {
            OutputMode::Inherit
        }
    }

    /// [`OutputMode::Pty`] when hangwatch's own stdout is a terminal (so the program buffers as
    /// it would on that terminal), [`OutputMode::Pipes`] otherwise.
    #[must_use]
    pub fn for_stdout() -> Self {
        use std::io::IsTerminal;
        if io::stdout().is_terminal() {
            OutputMode::Pty
        } else {
            OutputMode::Pipes
        }
    }
}

/// The program's ends of its stdout and stderr, for the spawn call to `dup2` onto fds 1 and 2.
/// Both are `O_CLOEXEC`. For [`OutputMode::Pty`] both are the pty's slave.
#[derive(Debug)]
pub struct ChildOutput {
    /// To become the program's fd 1.
    pub stdout: OwnedFd,
    /// To become the program's fd 2.
    pub stderr: OwnedFd,
}

/// What arrived since the previous [`OutputPump::activity`] call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Bytes read from the program's stdout (for a pty: from both streams).
    pub stdout_bytes: usize,
    /// Bytes read from the program's stderr (always 0 for a pty).
    pub stderr_bytes: usize,
    /// Every stream has reached end of file: whoever held the program's ends has closed them.
    pub closed: bool,
}

/// The accounting of a finished pump. At the moment [`OutputPump::finish`] returns,
/// `bytes_read == bytes_written + bytes_dropped + bytes_unflushed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputStats {
    /// Bytes read from the program, on all streams.
    pub bytes_read: u64,
    /// Bytes written to hangwatch's own stdout/stderr.
    pub bytes_written: u64,
    /// Bytes dropped because hangwatch's own output could not keep up (or failed).
    pub bytes_dropped: u64,
    /// Bytes still queued (or being written) when `finish`'s limit ran out; they were abandoned.
    pub bytes_unflushed: u64,
}

/// Creates the pipes or the pseudo-terminal for `mode`, with hangwatch's own stdout and stderr
/// as the destinations. Returns the program's ends (none for [`OutputMode::Inherit`]) and the
/// pump that drains hangwatch's ends. Must be called inside a tokio runtime.
///
/// For a pty, hangwatch's terminal window size (from fd 1) is copied onto it when fd 1 is a
/// terminal.
pub fn capture(mode: OutputMode) -> io::Result<(Option<ChildOutput>, OutputPump)> {
    let (stdout, stderr): (Sink, Sink) = match mode {
        OutputMode::Inherit => (Box::new(io::sink()), Box::new(io::sink())),
        OutputMode::Pipes => (
            own_stream(io::stdout().as_fd())?,
            own_stream(io::stderr().as_fd())?,
        ),
        OutputMode::Pty => (own_stream(io::stdout().as_fd())?, Box::new(io::sink())),
    };
    capture_with_sinks(mode, stdout, stderr)
}

/// Like [`capture`], with the destinations given: the writer threads copy the program's stdout
/// to `stdout` and its stderr to `stderr` (unused for a pty, whose streams merge into `stdout`).
pub fn capture_with_sinks(
    mode: OutputMode,
    stdout: Sink,
    stderr: Sink,
) -> io::Result<(Option<ChildOutput>, OutputPump)> {
    let mut pump = OutputPump {
        stdout: None,
        stderr: None,
        child_ends: Vec::new(),
        buf: vec![0; READ_SIZE].into_boxed_slice(),
        tail: OutputTail::default(),
    };
    let child = match mode {
        OutputMode::Inherit => None,
        OutputMode::Pipes => {
            let (out_read, out_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            let (err_read, err_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            pump.child_ends = vec![out_write.try_clone()?, err_write.try_clone()?];
            pump.stdout = Some(Stream::start(StreamName::Stdout, out_read, false, stdout)?);
            pump.stderr = Some(Stream::start(StreamName::Stderr, err_read, false, stderr)?);
            Some(ChildOutput {
                stdout: out_write,
                stderr: err_write,
            })
        }
        OutputMode::Pty => {
            let (master, slave) = open_pty()?;
            copy_window_size(&master);
            pump.child_ends = vec![slave.try_clone()?];
            pump.stdout = Some(Stream::start(StreamName::Stdout, master, true, stdout)?);
            Some(ChildOutput {
                stdout: slave.try_clone()?,
                stderr: slave,
            })
        }
    };
    Ok((child, pump))
}

/// Drains the program's output in the event loop and feeds the writer threads.
#[derive(Debug)]
pub struct OutputPump {
    /// The program's stdout, or the pty master (both streams).
    stdout: Option<Stream>,
    /// The program's stderr; `None` for a pty.
    stderr: Option<Stream>,
    /// hangwatch's copies of the program's ends, kept until [`OutputPump::child_started`] so
    /// that no end of file is seen before the program holds them.
    child_ends: Vec<OwnedFd>,
    /// One read's worth, reused.
    buf: Box<[u8]>,
    /// The last lines read, for the incident.
    tail: OutputTail,
}

impl OutputPump {
    /// Call after spawning (whether or not the spawn succeeded): drops hangwatch's copies of the
    /// program's ends, so that end of file can be seen once the program and its descendants
    /// close theirs. The caller must drop its [`ChildOutput`] too.
    pub fn child_started(&mut self) {
        self.child_ends.clear();
    }

    /// Waits until output arrives and returns what happened since the last call. Reading
    /// happens here, into a 64 KiB buffer, and each chunk is queued for its writer thread (or
    /// dropped if that queue is full). When every stream is closed (or there are none, as with
    /// [`OutputMode::Inherit`]) this never resolves, so it can sit in a `select!` loop. An
    /// error closes the stream it came from. Cancel-safe: bytes read are counted before any
    /// await.
    pub async fn activity(&mut self) -> io::Result<Activity> {
        loop {
            let Self {
                stdout,
                stderr,
                buf,
                tail,
                ..
            } = self;
            // Each chunk goes to the tail as it is read: one call reads several into `buf`.
            let (is_stdout, read) = tokio::select! {
                ready = readable(stdout.as_ref()) => (true, read_ready(stdout.as_ref(), ready, buf, |chunk| {
                    tail.stdout.bytes(chunk, std::time::SystemTime::now());
                })),
                ready = readable(stderr.as_ref()) => (false, read_ready(stderr.as_ref(), ready, buf, |chunk| {
                    tail.stderr.bytes(chunk, std::time::SystemTime::now());
                })),
            };
            let stream = if is_stdout { stdout } else { stderr };
            let Some(stream) = stream.as_mut() else {
                continue;
            };
            let read = match read {
                Ok(read) => read,
                Err(err) => {
                    stream.close();
                    return Err(err);
                }
            };
            stream.bytes_read += read.bytes as u64;
            if read.eof {
                stream.close();
            }
            let closed = self.is_closed();
            if read.bytes > 0 || closed {
                return Ok(Activity {
                    stdout_bytes: if is_stdout { read.bytes } else { 0 },
                    stderr_bytes: if is_stdout { 0 } else { read.bytes },
                    closed,
                });
            }
        }
    }

    /// What the program last wrote (the last lines of each stream), or `None` when it wrote
    /// nothing or hangwatch does not read its output.
    #[must_use]
    pub fn last_output(&self) -> Option<LastOutput> {
        self.tail.last()
    }

    /// Bytes dropped so far because hangwatch's own output could not keep up.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.streams().map(|s| s.queue.lock().dropped).sum()
    }

    /// Copies hangwatch's terminal window size (from fd 1) onto the pty, which sends the
    /// program `SIGWINCH`. Call on hangwatch's own `SIGWINCH`. A no-op without a pty, after
    /// its end of file, or when fd 1 is not a terminal.
    pub fn resize(&self) {
        let master = self
            .stdout
            .as_ref()
            .filter(|stream| stream.is_pty)
            .and_then(|stream| stream.fd.as_ref());
        if let Some(master) = master {
            copy_window_size(master.get_ref());
        }
    }

    /// Reads what is left in the program's streams until end of file (every writer gone) or for
    /// `limit` at most: a program that wrote and exited at once ends its run before its output
    /// was read, and must still be heard.
    pub async fn drain(&mut self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.is_closed() {
            if tokio::time::timeout_at(deadline, self.activity())
                .await
                .is_err()
            {
                break;
            }
        }
    }

    /// Stops reading and waits, at most `limit`, for the writer threads to write what is
    /// queued. What is left when the limit runs out is abandoned and reported as
    /// [`OutputStats::bytes_unflushed`]. Blocks the calling thread for up to `limit`.
    ///
    /// Call it after the program's output reached end of file (or after a bounded wait for it):
    /// a program still writing would get `EPIPE`. The writer threads are detached and never
    /// keep hangwatch alive; one stuck in a write dies when hangwatch exits.
    #[must_use]
    pub fn finish(mut self, limit: Duration) -> OutputStats {
        let deadline = Instant::now() + limit;
        self.child_ends.clear();
        for stream in [&mut self.stdout, &mut self.stderr].into_iter().flatten() {
            stream.close();
        }
        let mut stats = OutputStats::default();
        for stream in self.streams() {
            let mut state = stream.queue.wait_done(deadline);
            stats.bytes_read += stream.bytes_read;
            stats.bytes_written += state.written;
            stats.bytes_dropped += state.dropped;
            if !state.writer_done {
                stats.bytes_unflushed += (state.queued + state.in_flight) as u64;
                state.abandon();
            }
        }
        stats
    }

    fn streams(&self) -> impl Iterator<Item = &Stream> {
        self.stdout.iter().chain(self.stderr.iter())
    }

    fn is_closed(&self) -> bool {
        self.streams().all(|s| s.fd.is_none())
    }
}

impl Drop for OutputPump {
    /// Lets the writer threads finish what is queued and exit.
    fn drop(&mut self) {
        for stream in [&mut self.stdout, &mut self.stderr].into_iter().flatten() {
            stream.close();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamName {
    Stdout,
    Stderr,
}

impl StreamName {
    fn as_str(self) -> &'static str {
        match self {
            StreamName::Stdout => "stdout",
            StreamName::Stderr => "stderr",
        }
    }
}

/// hangwatch's end of one of the program's streams and the queue to its writer thread.
#[derive(Debug)]
struct Stream {
    /// `None` once end of file was read.
    fd: Option<AsyncFd<OwnedFd>>,
    /// A pty master: `EIO` on read means every slave was closed.
    is_pty: bool,
    queue: Arc<Queue>,
    bytes_read: u64,
}

impl Stream {
    /// Registers `fd` with the reactor and starts the writer thread copying into `sink`.
    fn start(name: StreamName, fd: OwnedFd, is_pty: bool, sink: Sink) -> io::Result<Self> {
        let flags = OFlag::from_bits_retain(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        let fd = hangwatch_process::async_fd::register(fd)?;
        let queue = Arc::new(Queue::new(name, QUEUE_LIMIT));
        let writer_queue = Arc::clone(&queue);
        // Detached: the handle is dropped, so a writer stuck on a slow stdout never delays
        // hangwatch's exit.
        std::thread::Builder::new()
            .name(format!("hangwatch-{}", name.as_str()))
            .spawn(move || write_queued(&writer_queue, sink))?;
        Ok(Stream {
            fd: Some(fd),
            is_pty,
            queue,
            bytes_read: 0,
        })
    }

    /// Stops reading (closing hangwatch's end) and lets the writer exit once the queue is empty.
    fn close(&mut self) {
        self.fd = None;
        self.queue.close();
    }
}

/// What one readiness event yielded.
struct Read {
    bytes: usize,
    eof: bool,
}

/// Resolves when `stream` is readable; never, if it is absent or closed.
async fn readable(stream: Option<&Stream>) -> io::Result<AsyncFdReadyGuard<'_, OwnedFd>> {
    match stream.and_then(|s| s.fd.as_ref()) {
        Some(fd) => fd.readable().await,
        None => std::future::pending().await,
    }
}

/// Reads what `stream` has (up to [`READS_PER_CALL`] chunks into `buf`), queueing each chunk
/// and handing it to `seen`.
fn read_ready(
    stream: Option<&Stream>,
    ready: io::Result<AsyncFdReadyGuard<'_, OwnedFd>>,
    buf: &mut [u8],
    mut seen: impl FnMut(&[u8]),
) -> io::Result<Read> {
    let mut guard = ready?;
    let mut read = Read {
        bytes: 0,
        eof: false,
    };
    let Some(stream) = stream else {
        return Ok(read);
    };
    for _ in 0..READS_PER_CALL {
        match guard.try_io(|fd| read_chunk(fd.get_ref(), buf, stream.is_pty)) {
            Ok(Ok(0)) => {
                read.eof = true;
                break;
            }
            Ok(Ok(n)) => {
                stream.queue.push(&buf[..n]);
                seen(&buf[..n]);
                read.bytes += n;
            }
            Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
            // Bytes already read are queued; losing their count to the error would be worse
            // than reporting the error one call late, so report it only when nothing was read.
            Ok(Err(err)) if read.bytes == 0 => return Err(err),
            Ok(Err(_)) => break,
            Err(_would_block) => break,
        }
    }
    Ok(read)
}

/// One `read(2)`; for a pty master, `EIO` (every slave closed) reads as end of file.
/// See pty(7) and <https://bugs.python.org/issue5380>.
fn read_chunk(fd: &OwnedFd, buf: &mut [u8], is_pty: bool) -> io::Result<usize> {
    match nix::unistd::read(fd, buf) {
        Ok(n) => Ok(n),
        Err(Errno::EIO) if is_pty => Ok(0),
        Err(errno) => Err(errno.into()),
    }
}

/// A duplicate of one of hangwatch's own fds (`F_DUPFD_CLOEXEC`), written without going
/// through std's `Stdout` lock and line buffer: the pass-through must not wait for a newline,
/// and must not hold a lock that hangwatch's own messages need.
pub(crate) fn own_stream(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<Sink> {
    Ok(Box::new(OwnStream(File::from(fd.try_clone_to_owned()?))))
}

/// hangwatch's stdout or stderr, as written by a writer thread.
struct OwnStream(File);

impl Write for OwnStream {
    /// A blocking write, even if someone else (the parent shell, a sibling such as node) set
    /// `O_NONBLOCK` on the shared open file description: on `EAGAIN` it waits in poll(2) for
    /// room instead of failing and dropping the rest of the output.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match self.0.write(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLOUT)];
                    match poll(&mut fds, PollTimeout::NONE) {
                        Ok(_) | Err(Errno::EINTR) => {}
                        Err(errno) => return Err(errno.into()),
                    }
                }
                result => return result,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Opens a pseudo-terminal; both fds `O_CLOEXEC` from the start, so that no program spawned
/// meanwhile by another thread inherits them. Returns (master, slave).
fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = rustix::pty::openpt(flags)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    // TIOCGPTPEER (Linux 4.13) opens the slave without a path lookup; fall back to the path.
    let slave = match rustix::pty::ioctl_tiocgptpeer(&master, flags) {
        Ok(slave) => slave,
        Err(_) => {
            use std::os::unix::ffi::OsStrExt;
            use std::os::unix::fs::OpenOptionsExt;
            let path = rustix::pty::ptsname(&master, Vec::new())?;
            // std opens with O_CLOEXEC.
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(OFlag::O_NOCTTY.bits())
                .open(std::ffi::OsStr::from_bytes(path.to_bytes()))?
                .into()
        }
    };
    Ok((master, slave))
}

/// Copies the window size of hangwatch's fd 1, if it is a terminal, onto the pty `master`.
fn copy_window_size(master: &OwnedFd) {
    let Ok(size) = rustix::termios::tcgetwinsize(io::stdout()) else {
        return;
    };
    if let Err(err) = rustix::termios::tcsetwinsize(master, size) {
        tracing::debug!(error = %err, "could not set the pty's window size");
    }
}

/// The bounded queue between the event loop (which pushes and never waits) and one writer
/// thread (which pops and does the blocking writes). The lock is held only to move a chunk in
/// or out, never across a write.
#[derive(Debug)]
struct Queue {
    name: StreamName,
    limit: usize,
    state: Mutex<QueueState>,
    /// Signalled when a chunk is pushed or the queue is closed.
    data: Condvar,
    /// Signalled when the writer thread exits.
    done: Condvar,
}

#[derive(Debug, Default)]
struct QueueState {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes in `chunks`.
    queued: usize,
    /// Bytes popped and being written.
    in_flight: usize,
    written: u64,
    dropped: u64,
    /// No more pushes: the writer exits once `chunks` is empty.
    closing: bool,
    /// hangwatch's output failed; everything from now on is dropped.
    sink_failed: bool,
    /// The first drop was logged.
    warned: bool,
    writer_done: bool,
}

impl QueueState {
    /// Forgets what is queued (`finish` ran out of time); the writer exits after its write.
    fn abandon(&mut self) {
        self.chunks.clear();
        self.queued = 0;
    }
}

impl Queue {
    fn new(name: StreamName, limit: usize) -> Self {
        Queue {
            name,
            limit,
            state: Mutex::new(QueueState::default()),
            data: Condvar::new(),
            done: Condvar::new(),
        }
    }

    /// The state, even if a writer thread panicked while holding it (the counters stay valid).
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a copy of `bytes`, or drops and counts them if the queue is full. Never waits
    /// (beyond the writer's brief hold of the lock).
    fn push(&self, bytes: &[u8]) {
        let mut state = self.lock();
        if state.closing || state.sink_failed || state.queued + bytes.len() > self.limit {
            state.dropped += bytes.len() as u64;
            if !state.warned && !state.sink_failed {
                state.warned = true;
                tracing::warn!(
                    stream = self.name.as_str(),
                    limit = self.limit,
                    "hangwatch's own output is not keeping up; dropping the program's output \
                     rather than blocking it"
                );
            }
            return;
        }
        // Small reads are appended to the last chunk, so that a program writing a byte at a
        // time cannot make the queue hold millions of tiny allocations: any two neighbouring
        // chunks hold more than READ_SIZE bytes, so the queue allocates at most about twice
        // its limit.
        match state.chunks.back_mut() {
            Some(last) if last.capacity() - last.len() >= bytes.len() => {
                last.extend_from_slice(bytes);
            }
            _ => {
                let mut chunk = Vec::with_capacity(READ_SIZE.max(bytes.len()));
                chunk.extend_from_slice(bytes);
                state.chunks.push_back(chunk);
            }
        }
        state.queued += bytes.len();
        drop(state);
        self.data.notify_one();
    }

    fn close(&self) {
        self.lock().closing = true;
        self.data.notify_one();
    }

    /// Waits until the writer thread exits or `deadline` passes; returns the state, locked.
    fn wait_done(&self, deadline: Instant) -> MutexGuard<'_, QueueState> {
        let mut state = self.lock();
        while !state.writer_done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state
    }
}

/// The writer thread: pops chunks and writes them to `sink` until the queue is closed and
/// empty, or the sink fails.
fn write_queued(queue: &Queue, mut sink: Sink) {
    loop {
        let chunk = {
            let mut state = queue.lock();
            loop {
                if let Some(chunk) = state.chunks.pop_front() {
                    state.queued -= chunk.len();
                    state.in_flight = chunk.len();
                    break Some(chunk);
                }
                if state.closing {
                    break None;
                }
                state = queue
                    .data
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let Some(chunk) = chunk else { break };
        let result = sink.write_all(&chunk).and_then(|()| sink.flush());
        let mut state = queue.lock();
        state.in_flight = 0;
        match result {
            Ok(()) => state.written += chunk.len() as u64,
            Err(err) => {
                // Everything not written is dropped; later pushes are dropped at once.
                state.sink_failed = true;
                state.dropped += (chunk.len() + state.queued) as u64;
                state.abandon();
                if err.kind() == io::ErrorKind::BrokenPipe {
                    tracing::debug!(
                        stream = queue.name.as_str(),
                        "hangwatch's output was closed"
                    );
                } else {
                    tracing::warn!(
                        stream = queue.name.as_str(),
                        error = %err,
                        "failed to write the program's output; dropping the rest"
                    );
                }
                break;
            }
        }
    }
    queue.lock().writer_done = true;
    queue.done.notify_all();
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// Every test wait is bounded; a test that needs longer is broken, not slow.
    const WAIT: Duration = Duration::from_secs(20);

    /// A sink that records what it got, optionally sleeping before each write to play a slow
    /// terminal.
    #[derive(Clone, Default)]
    struct Recorder {
        bytes: Arc<Mutex<Vec<u8>>>,
        count: Arc<AtomicU64>,
        delay: Duration,
        keep: bool,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            std::thread::sleep(self.delay);
            if self.keep {
                self.bytes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(buf);
            }
            self.count.fetch_add(buf.len() as u64, Ordering::SeqCst);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Recorder {
        fn keeping() -> Self {
            Recorder {
                keep: true,
                ..Recorder::default()
            }
        }

        fn slow(delay: Duration) -> Self {
            Recorder {
                delay,
                ..Recorder::default()
            }
        }

        fn contents(&self) -> Vec<u8> {
            self.bytes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }
    }

    /// Calls `activity` until every stream is closed; returns the totals per stream.
    async fn drain(pump: &mut OutputPump) -> (usize, usize) {
        let (mut out, mut err) = (0, 0);
        loop {
            let activity = tokio::time::timeout(WAIT, pump.activity())
                .await
                .expect("output should reach end of file within the limit")
                .expect("reading the program's output");
            out += activity.stdout_bytes;
            err += activity.stderr_bytes;
            if activity.closed {
                return (out, err);
            }
        }
    }

    /// Waits for `child` to exit. Another test in this binary may reap every child of the
    /// process (`waitpid(-1)`), so `ECHILD` also means "it exited".
    async fn exited(mut child: std::process::Child) -> Option<std::process::ExitStatus> {
        let wait = tokio::task::spawn_blocking(move || child.wait());
        match tokio::time::timeout(WAIT, wait)
            .await
            .expect("the child should exit within the limit")
            .expect("the waiting thread should not panic")
        {
            Ok(status) => Some(status),
            Err(err) if err.raw_os_error() == Some(nix::libc::ECHILD) => None,
            Err(err) => panic!("waiting for the child: {err}"),
        }
    }

    #[tokio::test]
    async fn bytes_written_into_child_ends_are_counted_and_passed_through() {
        let out_sink = Recorder::keeping();
        let err_sink = Recorder::keeping();
        let (child, mut pump) = capture_with_sinks(
            OutputMode::Pipes,
            Box::new(out_sink.clone()),
            Box::new(err_sink.clone()),
        )
        .expect("creating the pipes");
        let child = child.expect("pipes give the child ends");
        pump.child_started();
        let writer = std::thread::spawn(move || {
            let mut stdout = File::from(child.stdout);
            let mut stderr = File::from(child.stderr);
            stdout.write_all(b"hello ").expect("writing stdout");
            stderr.write_all(b"oops").expect("writing stderr");
            stdout.write_all(b"world\n").expect("writing stdout");
        });

        let first = tokio::time::timeout(WAIT, pump.activity())
            .await
            .expect("activity should be seen within the limit")
            .expect("reading the program's output");
        assert!(first.stdout_bytes + first.stderr_bytes > 0, "{first:?}");
        writer.join().expect("the writer thread should not panic");
        let (out, err) = drain(&mut pump).await;
        assert_eq!(first.stdout_bytes + out, 12);
        assert_eq!(first.stderr_bytes + err, 4);

        let stats = pump.finish(WAIT);
        assert_eq!(
            stats,
            OutputStats {
                bytes_read: 16,
                bytes_written: 16,
                bytes_dropped: 0,
                bytes_unflushed: 0
            }
        );
        assert_eq!(out_sink.contents(), b"hello world\n");
        assert_eq!(err_sink.contents(), b"oops");
    }

    #[tokio::test]
    async fn closing_the_child_ends_reports_closed() {
        let (child, mut pump) = capture_with_sinks(
            OutputMode::Pipes,
            Box::new(io::sink()),
            Box::new(io::sink()),
        )
        .expect("creating the pipes");
        drop(child);
        pump.child_started();
        let activity = tokio::time::timeout(WAIT, pump.activity())
            .await
            .expect("end of file should be seen within the limit")
            .expect("reading the program's output");
        assert_eq!(
            activity,
            Activity {
                stdout_bytes: 0,
                stderr_bytes: 0,
                closed: true
            }
        );
        // Once everything is closed, activity() stays pending, so a select! loop can keep it.
        let again = tokio::time::timeout(Duration::from_millis(50), pump.activity()).await;
        assert!(again.is_err(), "activity after close should stay pending");
        assert_eq!(pump.finish(WAIT), OutputStats::default());
    }

    #[tokio::test]
    async fn no_end_of_file_before_child_started() {
        let (child, mut pump) = capture_with_sinks(
            OutputMode::Pipes,
            Box::new(io::sink()),
            Box::new(io::sink()),
        )
        .expect("creating the pipes");
        drop(child);
        let early = tokio::time::timeout(Duration::from_millis(50), pump.activity()).await;
        assert!(early.is_err(), "the pump's copies keep the pipes open");
        pump.child_started();
        let (out, err) = drain(&mut pump).await;
        assert_eq!((out, err), (0, 0));
    }

    #[tokio::test]
    async fn a_100_mb_burst_never_blocks_on_a_slow_sink() {
        const TOTAL: u64 = 100_000_000;
        // 20 ms per write of at most 64 KiB is at most ~3.2 MB/s: passing all 100 MB through
        // would take over 30 s, longer than WAIT, so the child can only finish in time if the
        // pump drops instead of blocking.
        let slow = Recorder::slow(Duration::from_millis(20));
        let (child_ends, mut pump) = capture_with_sinks(
            OutputMode::Pipes,
            Box::new(slow.clone()),
            Box::new(io::sink()),
        )
        .expect("creating the pipes");
        let child_ends = child_ends.expect("pipes give the child ends");
        let child = Command::new("head")
            .args(["-c", &TOTAL.to_string(), "/dev/zero"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(child_ends.stdout))
            .stderr(Stdio::from(child_ends.stderr))
            .spawn()
            .expect("spawning head");
        pump.child_started();

        let (out, err) = drain(&mut pump).await;
        assert_eq!(out as u64, TOTAL, "every byte is read");
        assert_eq!(err, 0);
        if let Some(status) = exited(child).await {
            assert!(status.success(), "head failed: {status}");
        }
        assert!(pump.dropped() > 0, "a slow sink must cause drops");

        let stats = pump.finish(Duration::from_millis(100));
        assert_eq!(stats.bytes_read, TOTAL);
        assert!(stats.bytes_dropped > 0);
        assert_eq!(
            stats.bytes_written + stats.bytes_dropped + stats.bytes_unflushed,
            TOTAL,
            "{stats:?}"
        );
        assert!(
            stats.bytes_unflushed <= (QUEUE_LIMIT + READ_SIZE) as u64,
            "memory stays bounded: {stats:?}"
        );
        assert!(slow.count.load(Ordering::SeqCst) >= stats.bytes_written);
    }

    #[tokio::test]
    async fn a_pty_is_a_terminal_to_the_child() {
        let out_sink = Recorder::keeping();
        let (child_ends, mut pump) = capture_with_sinks(
            OutputMode::Pty,
            Box::new(out_sink.clone()),
            Box::new(io::sink()),
        )
        .expect("creating the pty");
        let child_ends = child_ends.expect("a pty gives the child ends");
        let child = Command::new("sh")
            .args(["-c", "test -t 1 && echo tty"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(child_ends.stdout))
            .stderr(Stdio::from(child_ends.stderr))
            .spawn()
            .expect("spawning sh");
        pump.child_started();
        pump.resize();

        let (out, err) = drain(&mut pump).await;
        if let Some(status) = exited(child).await {
            assert!(status.success(), "sh failed: {status}");
        }
        assert_eq!(err, 0, "a pty merges stderr into stdout");
        let stats = pump.finish(WAIT);
        // The line discipline turns "\n" into "\r\n".
        assert_eq!(out_sink.contents(), b"tty\r\n");
        assert_eq!(out, 5);
        assert_eq!(stats.bytes_written, 5);
    }

    #[tokio::test]
    async fn inherit_has_no_child_ends_and_never_reports() {
        let (child, mut pump) = capture(OutputMode::Inherit).expect("inherit needs nothing");
        assert!(child.is_none());
        pump.child_started();
        let activity = tokio::time::timeout(Duration::from_millis(50), pump.activity()).await;
        assert!(activity.is_err(), "nothing to read: pending forever");
        assert_eq!(pump.finish(WAIT), OutputStats::default());
    }

    #[test]
    fn own_stream_waits_instead_of_failing_on_a_non_blocking_fd() {
        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("creating a pipe");
        fcntl(&write_end, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("setting O_NONBLOCK");
        // More than a pipe holds, so some writes meet EAGAIN until the reader catches up.
        let total = 1024 * 1024;
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            io::Read::read_to_end(&mut File::from(read_end), &mut got).map(|_| got.len())
        });
        let mut sink = OwnStream(File::from(write_end));
        sink.write_all(&vec![7; total])
            .expect("the write should wait for room, not fail");
        drop(sink);
        let read = reader.join().expect("the reader should not panic");
        assert_eq!(read.expect("reading the pipe"), total);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let queue = Queue::new(StreamName::Stdout, 10);
        queue.push(b"123456");
        queue.push(b"7890");
        queue.push(b"x");
        let state = queue.lock();
        assert_eq!(state.queued, 10);
        assert_eq!(state.dropped, 1);
        assert_eq!(state.chunks.len(), 1, "small reads share a chunk");
        assert_eq!(state.chunks[0], b"1234567890");
    }

    #[test]
    fn a_failed_sink_drops_the_rest() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let queue = Queue::new(StreamName::Stdout, 100);
        queue.push(b"abc");
        queue.push(b"de");
        queue.close();
        write_queued(&queue, Box::new(Broken));
        queue.push(b"f");
        let state = queue.lock();
        assert!(state.writer_done && state.sink_failed);
        assert_eq!((state.written, state.dropped, state.queued), (0, 6, 0));
    }
}
