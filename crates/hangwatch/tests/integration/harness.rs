//! What every integration test needs: the binaries, scratch directories, bounded runs of
//! hangwatch, and a guard that kills by PID (start time checked) whatever a test started.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hangwatch_process::{ProcessId, Signal};
use hangwatch_protocol::event::{Event, EventRecord};
use hangwatch_protocol::report::RunReport;

/// The longest any single hangwatch run in a test may take before the test fails (and kills it).
pub const RUN_DEADLINE: Duration = Duration::from_secs(20);

/// Path of the `hangwatch` binary under test.
pub fn hangwatch() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hangwatch"))
}

/// Path of the misbehaving test programs (`crates/test-programs`), built beside `hangwatch` by
/// `cargo nextest run --workspace`.
pub fn fixture() -> PathBuf {
    let path = hangwatch()
        .parent()
        .expect("binary directory")
        .join("hw-fixture");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo nextest run --workspace` (or `cargo build --workspace` first)",
        path.display()
    );
    path
}

/// A scratch directory removed on drop.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "hangwatch-test-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create scratch dir");
        Scratch { path }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Reads `<pid> <starttime>` lines written by the fixture.
pub fn read_pids(path: &Path) -> Vec<ProcessId> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some(ProcessId {
                pid: parts.next()?.parse().ok()?,
                start_time: parts.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// Owns every process a test knows of; on drop, kills each still alive (identity checked) so a
/// failing test leaves nothing behind.
#[derive(Default)]
pub struct Guard {
    ids: Vec<ProcessId>,
}

impl Guard {
    pub fn track(&mut self, ids: impl IntoIterator<Item = ProcessId>) {
        self.ids.extend(ids);
    }

    /// Asserts that none of the tracked processes exists any more, not even as a zombie: with
    /// PID 1 of a container not reaping, a zombie would mean hangwatch failed to reap.
    pub fn assert_all_gone(&self) {
        let survivors: Vec<_> = self.ids.iter().filter(|id| exists(id)).collect();
        assert!(survivors.is_empty(), "processes survived: {survivors:?}");
    }
}

/// Whether the process exists in any state, zombie included.
pub fn exists(id: &ProcessId) -> bool {
    hangwatch_process::stat::read_stat(id.pid)
        .ok()
        .flatten()
        .is_some_and(|stat| stat.start_time == id.start_time)
}

/// Whether the process is alive (not a zombie). For processes whose parent died, a zombie is
/// as far as a test can go: PID 1 of a container may never reap it.
pub fn alive(id: &ProcessId) -> bool {
    hangwatch_process::stat::read_stat(id.pid)
        .ok()
        .flatten()
        .is_some_and(|stat| stat.start_time == id.start_time && !stat.is_zombie())
}

impl Guard {
    /// Asserts that none of the tracked processes is alive; zombies whose parent is gone are
    /// allowed (see [`alive`]).
    pub fn assert_none_alive(&self) {
        let survivors: Vec<_> = self.ids.iter().filter(|id| alive(id)).collect();
        assert!(survivors.is_empty(), "processes survived: {survivors:?}");
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for id in &self.ids {
            if let Ok(Some(pidfd)) = hangwatch_process::pidfd::PidFd::open(*id) {
                let _ = pidfd.send(hangwatch_process::Signal::KILL);
            }
        }
    }
}

/// A running `hangwatch` under test, with its output collected by threads.
pub struct Hangwatch {
    child: Child,
    id: ProcessId,
    stdout_lines: mpsc::Receiver<String>,
    stdout_done: mpsc::Receiver<String>,
    stderr_done: mpsc::Receiver<String>,
    stdout_seen: String,
    /// hangwatch's `XDG_STATE_HOME`, removed with the run: default incident files land here,
    /// never in the user's home.
    _state: Scratch,
}

/// The end of a hangwatch run.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or_else(|| {
            panic!(
                "hangwatch died of a signal: {:?}\nstderr:\n{}",
                self.status, self.stderr
            )
        })
    }
}

impl Hangwatch {
    /// Starts `hangwatch ARGS` with stdin closed and stdout/stderr piped, in a process group of
    /// its own so that a failing test can kill everything.
    pub fn start<I, S>(args: I) -> Hangwatch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Hangwatch::start_with_env(args, std::iter::empty::<(&str, &str)>())
    }

    /// [`Hangwatch::start`] with variables added to (or replacing in) its environment.
    pub fn start_with_env<I, S, E, K, V>(args: I, env: E) -> Hangwatch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
        E: IntoIterator<Item = (K, V)>,
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(hangwatch());
        command.args(args).envs(env);
        Hangwatch::spawn(command)
    }

    /// [`Hangwatch::start`] as PID 1 of a new PID namespace (`unshare --pid --fork
    /// --mount-proc`), as a container's entrypoint is. The process tracked is `unshare`, which
    /// exits with hangwatch's status; when hangwatch (the namespace's init) dies, the kernel
    /// kills everything left in the namespace.
    pub fn start_as_pid1<I, S>(args: I) -> Hangwatch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new("unshare");
        command
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(hangwatch())
            .args(args);
        Hangwatch::spawn(command)
    }

    fn spawn(mut command: Command) -> Hangwatch {
        use std::os::unix::process::CommandExt;
        let state = Scratch::new("state");
        // A state directory of the test's own (from `start_with_env`) wins over the scratch one.
        if !command.get_envs().any(|(key, _)| key == "XDG_STATE_HOME") {
            command.env("XDG_STATE_HOME", &state.path);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn hangwatch");
        let id = ProcessId::of(child.id() as i32)
            .expect("read /proc")
            .expect("hangwatch in /proc");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (line_tx, stdout_lines) = mpsc::channel();
        let (out_tx, stdout_done) = mpsc::channel();
        std::thread::spawn(move || {
            let mut all = String::new();
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                let _ = line_tx.send(line.clone());
                all.push_str(&line);
                line.clear();
            }
            let _ = out_tx.send(all);
        });
        let (err_tx, stderr_done) = mpsc::channel();
        std::thread::spawn(move || {
            let mut all = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut all);
            let _ = err_tx.send(all);
        });
        Hangwatch {
            child,
            id,
            stdout_lines,
            stdout_done,
            stderr_done,
            stdout_seen: String::new(),
            _state: state,
        }
    }

    /// Waits (bounded) for a stdout line starting with `prefix` and returns it.
    pub fn wait_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout_seen.push_str(&line);
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => {
                    self.kill();
                    panic!(
                        "no line starting with {prefix:?} within 10 s; stdout so far:\n{}",
                        self.stdout_seen
                    );
                }
            }
        }
    }

    /// Waits (at most `within`) for a stdout line for which `matches` holds, and returns it.
    pub fn wait_for(&mut self, within: Duration, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout_seen.push_str(&line);
                    if matches(&line) {
                        return line;
                    }
                }
                Err(_) => {
                    self.kill();
                    panic!(
                        "no expected line within {within:?}; stdout so far:\n{}",
                        self.stdout_seen
                    );
                }
            }
        }
    }

    /// The `XDG_STATE_HOME=…` entry in hangwatch's environment: unique to this run, and
    /// inherited by everything hangwatch forks or starts (its guardian, its programs and their
    /// descendants), so [`tagged_alive`] with it finds all of them.
    pub fn env_tag(&self) -> String {
        format!("XDG_STATE_HOME={}", self._state.path.display())
    }

    /// hangwatch's own identity.
    pub fn id(&self) -> ProcessId {
        self.id
    }

    /// Sends `signal` to hangwatch itself.
    pub fn signal(&self, signal: hangwatch_process::Signal) {
        let pidfd = hangwatch_process::pidfd::PidFd::open(self.id)
            .expect("open pidfd")
            .expect("hangwatch alive");
        pidfd.send(signal).expect("send signal");
    }

    /// Waits for hangwatch to exit, at most [`RUN_DEADLINE`], and for both pipes to close.
    pub fn finish(mut self) -> Finished {
        let started = Instant::now();
        let deadline = started + RUN_DEADLINE;
        let status = loop {
            // A test may poll: it is bounded, and the code under test must not.
            if let Some(status) = self.child.try_wait().expect("wait for hangwatch") {
                break status;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!("hangwatch did not exit within {RUN_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = started.elapsed();
        let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        let stdout = self
            .stdout_done
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("hangwatch's stdout still open after it exited"));
        let stderr = self
            .stderr_done
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("hangwatch's stderr still open after it exited"));
        Finished {
            status,
            stdout: format!("{}{stdout}", self.stdout_seen),
            stderr,
            elapsed,
        }
    }

    fn kill(&mut self) {
        // hangwatch's group: hangwatch and anything that stayed in it.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.id.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

impl Drop for Hangwatch {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Runs `hangwatch ARGS` to the end.
pub fn run<I, S>(args: I) -> Finished
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Hangwatch::start(args).finish()
}

/// Parses a report file.
pub fn read_report(path: &Path) -> RunReport {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("read report {}: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("parse report: {err}\n{text}"))
}

/// The identities of every process a report says hangwatch stopped, plus the program.
pub fn report_ids(report: &RunReport) -> Vec<ProcessId> {
    report
        .stopped
        .iter()
        .map(|p| ProcessId {
            pid: p.process.pid,
            start_time: p.process.start_time,
        })
        .collect()
}

/// A running `hangwatch up --json` and what the test saw of it: every event read, and a guard
/// tracking the supervisor and every program it started.
pub struct Up {
    pub hw: Hangwatch,
    pub events: Vec<EventRecord>,
    pub guard: Guard,
}

impl Up {
    /// Writes `config` as `hangwatch.toml` in `dir` (state directory `dir/state`) and starts
    /// `hangwatch up --json` on it.
    pub fn start(dir: &Scratch, config: &str) -> Up {
        let text = format!("state_dir = \"state\"\n{config}");
        std::fs::write(dir.file("hangwatch.toml"), text).expect("write config");
        Up::resume(dir)
    }

    /// Starts another `hangwatch up` on the config already in `dir`.
    pub fn resume(dir: &Scratch) -> Up {
        Up::resume_with_env(dir, std::iter::empty::<(&str, &str)>())
    }

    /// [`Up::resume`] with variables added to hangwatch's environment.
    pub fn resume_with_env<K, V>(dir: &Scratch, env: impl IntoIterator<Item = (K, V)>) -> Up
    where
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        let hw = Hangwatch::start_with_env(
            [
                "up".as_ref(),
                "--json".as_ref(),
                "-f".as_ref(),
                dir.file("hangwatch.toml").as_os_str(),
            ],
            env,
        );
        let mut guard = Guard::default();
        guard.track([hw.id()]);
        Up {
            hw,
            events: Vec::new(),
            guard,
        }
    }

    /// [`Up::start`] in a mount namespace of its own (`unshare --mount`), after the shell
    /// commands `setup` ran in it (to take a part of the system away for real). The process
    /// tracked is hangwatch itself: `unshare` and the shell exec it.
    pub fn start_in_mount_namespace(dir: &Scratch, config: &str, setup: &str) -> Up {
        let text = format!("state_dir = \"state\"\n{config}");
        std::fs::write(dir.file("hangwatch.toml"), text).expect("write config");
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "sh", "-c"])
            .arg(format!("{setup} && exec \"$0\" up --json -f \"$1\""))
            .arg(hangwatch())
            .arg(dir.file("hangwatch.toml"));
        let hw = Hangwatch::spawn(command);
        let mut guard = Guard::default();
        guard.track([hw.id()]);
        Up {
            hw,
            events: Vec::new(),
            guard,
        }
    }

    /// Waits (at most `within`) for an event matching `pred`; every event read on the way is
    /// kept, and the PID of every started program is tracked.
    pub fn wait(&mut self, within: Duration, pred: impl Fn(&EventRecord) -> bool) -> EventRecord {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .hw
                .wait_for(left.max(Duration::from_millis(1)), |_| true);
            let record: EventRecord = serde_json::from_str(line.trim())
                .unwrap_or_else(|err| panic!("not an event ({err}): {line}"));
            if let Event::Started { pid, .. } = &record.event
                && let Ok(Some(id)) = ProcessId::of(*pid)
            {
                self.guard.track([id]);
            }
            self.events.push(record.clone());
            if pred(&record) {
                return record;
            }
        }
    }

    /// The first event seen so far that matches `pred`, or else the next one: for events whose
    /// order is not fixed (a restart may come before or after the incident's write).
    pub fn seen_or_wait(
        &mut self,
        within: Duration,
        pred: impl Fn(&EventRecord) -> bool,
    ) -> EventRecord {
        match self.events.iter().find(|e| pred(e)) {
            Some(seen) => seen.clone(),
            None => self.wait(within, pred),
        }
    }

    /// Sends `signal` to hangwatch and waits for it to exit; returns its exit code and all the
    /// events.
    pub fn stop(self, signal: Signal) -> (i32, Vec<EventRecord>, Guard) {
        self.hw.signal(signal);
        self.finish()
    }

    /// Waits for hangwatch to exit by itself.
    pub fn finish(self) -> (i32, Vec<EventRecord>, Guard) {
        let Up {
            hw,
            mut events,
            guard,
        } = self;
        let finished = hw.finish();
        for line in finished.stdout.lines() {
            if let Ok(record) = serde_json::from_str::<EventRecord>(line)
                && !events.contains(&record)
            {
                events.push(record);
            }
        }
        assert!(
            finished.stderr.trim().is_empty() || !finished.stderr.contains("panicked"),
            "{}",
            finished.stderr
        );
        // Killed by a signal: the shell's 128 + N.
        let code = {
            use std::os::unix::process::ExitStatusExt;
            finished
                .status
                .code()
                .unwrap_or_else(|| 128 + finished.status.signal().unwrap_or(0))
        };
        (code, events, guard)
    }
}

/// Every live (not zombie) process whose starting environment holds the entry `entry`
/// (`NAME=value`), with its command name.
pub fn tagged_alive(entry: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for dirent in std::fs::read_dir("/proc").expect("list /proc").flatten() {
        let Some(pid) = dirent
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        if hangwatch_process::environ::environ_contains(pid, entry.as_bytes()).unwrap_or(false)
            && hangwatch_process::stat::read_stat(pid)
                .ok()
                .flatten()
                .is_some_and(|stat| !stat.is_zombie())
        {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            found.push((pid, comm.trim().to_owned()));
        }
    }
    found
}

/// Waits (at most `within`) until no live process carries `entry`; returns what is still
/// alive at the deadline (empty on success).
pub fn wait_untagged(entry: &str, within: Duration) -> Vec<(i32, String)> {
    let deadline = Instant::now() + within;
    loop {
        let alive = tagged_alive(entry);
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
