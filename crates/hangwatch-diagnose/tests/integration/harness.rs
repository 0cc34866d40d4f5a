//! Real Python programs for the tests: started with a deadline on their readiness line and
//! killed by PID (never reaped before, so the PID cannot name another process) on drop.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hangwatch_diagnose::python::{PythonDump, PythonError, dump};

/// The bound on any single wait of a test: a program becoming ready, a stack showing up, one
/// dump. Generous for a loaded 2-core machine; the events themselves take milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Path of a script of `tests/programs`.
pub fn program(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs")
        .join(name)
}

/// A running program, killed on drop.
pub struct Running {
    child: Child,
    /// The readiness line, once seen.
    pub ready_line: String,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Running {
    /// Starts `interpreter SCRIPT ARGS` and waits (bounded) for its line starting with `ready`.
    pub fn python(interpreter: &Path, script: &str, args: &[&str]) -> Running {
        let mut command = Command::new(interpreter);
        command.arg(program(script)).args(args);
        Running::start(command, true)
    }

    /// Starts `command` in a process group of its own; waits for `ready` if asked.
    pub fn start(mut command: Command, wait_ready: bool) -> Running {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {command:?}: {err}"));
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (line_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (err_tx, stderr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut all = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut all);
            let _ = err_tx.send(all);
        });
        let mut running = Running {
            child,
            ready_line: String::new(),
            lines,
            stderr: stderr_rx,
        };
        if wait_ready {
            let deadline = Instant::now() + DEADLINE;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match running.lines.recv_timeout(left) {
                    Ok(line) if line.starts_with("ready") => {
                        running.ready_line = line;
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let stderr = running.finish_stderr();
                        panic!("{command:?} never printed `ready`; stderr:\n{stderr}");
                    }
                }
            }
        }
        running
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether the program has exited, without reaping it: a zombie still holds its PID.
    pub fn has_exited_unreaped(&self) -> bool {
        hangwatch_process::stat::read_stat(self.pid())
            .ok()
            .flatten()
            .is_none_or(|stat| stat.is_zombie())
    }

    /// Reaps the program if it has exited.
    pub fn try_reap(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits (bounded by [`DEADLINE`]) for the program to exit by itself; returns its status,
    /// the stdout lines not read yet, and its stderr.
    pub fn wait_exit(&mut self) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the program") {
                break status;
            }
            if Instant::now() > deadline {
                let stderr = self.finish_stderr();
                panic!("the program did not exit within {DEADLINE:?}; stderr:\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The reading thread ends its channel at end of file, after the last line.
        let mut lines = Vec::new();
        loop {
            match self.lines.recv_timeout(DEADLINE) {
                Ok(line) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("stdout stayed open"),
            }
        }
        let stderr = self.stderr.recv_timeout(DEADLINE).unwrap_or_default();
        (status, lines, stderr)
    }

    /// Kills the program (if still there) and returns what it wrote on stderr.
    fn finish_stderr(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.recv_timeout(DEADLINE).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // `Child::kill` signals the PID of a child not yet reaped: it cannot be a stranger.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// [`dump`] on a thread of its own, failing the test (and so killing the program through its
/// guard) if it does not return within [`DEADLINE`].
pub fn dump_within_deadline(pid: i32) -> Result<PythonDump, PythonError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(dump(pid));
    });
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("dump({pid}) took longer than {DEADLINE:?}"))
}

/// Dumps `pid` until `done` accepts a dump, within [`DEADLINE`]; returns that dump. A program
/// past its readiness line may need a moment more to reach the state the test looks for (a
/// thread between a barrier and the lock it will block on).
pub fn dump_until(pid: i32, what: &str, mut done: impl FnMut(&PythonDump) -> bool) -> PythonDump {
    let deadline = Instant::now() + DEADLINE;
    let mut last = None;
    while Instant::now() < deadline {
        let dumped = dump_within_deadline(pid).unwrap_or_else(|err| panic!("dump({pid}): {err}"));
        if done(&dumped) {
            return dumped;
        }
        last = Some(dumped);
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no dump of {pid} showed {what} within {DEADLINE:?}; the last one:\n{last:#?}");
}

/// The line of `script` carrying the marker `# MARKER`, 1-based.
pub fn marked_line(script: &str, marker: &str) -> i32 {
    let text = std::fs::read_to_string(program(script)).expect("read the script");
    let tag = format!("# {marker}");
    let index = text
        .lines()
        .position(|line| line.trim_end().ends_with(&tag))
        .unwrap_or_else(|| panic!("no line ends with `{tag}` in {script}"));
    i32::try_from(index + 1).expect("line number")
}

/// `python3` from `PATH`: the interpreter the project's machines have.
pub fn default_python() -> PathBuf {
    PathBuf::from("python3")
}

/// One CPython interpreter per minor version 3.8–3.13 found in the usual places (pyenv,
/// `/usr/bin`, `/usr/local/bin`), with its version.
pub fn installed_pythons() -> Vec<(String, PathBuf)> {
    let mut dirs: Vec<PathBuf> = vec!["/usr/local/bin".into(), "/usr/bin".into()];
    let pyenv_root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".pyenv")));
    let mut versions: Vec<PathBuf> = pyenv_root
        .and_then(|root| std::fs::read_dir(root.join("versions")).ok())
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin"))
        .collect();
    versions.sort();
    dirs.extend(versions);
    (8..=13)
        .filter_map(|minor| {
            let name = format!("python3.{minor}");
            let path = dirs
                .iter()
                .map(|dir| dir.join(&name))
                .find(|p| p.exists())?;
            Some((format!("3.{minor}"), path))
        })
        .collect()
}

/// The `name=value` pairs of a readiness line (`ready MainThread=120 first-worker=121`).
pub fn ready_fields(line: &str) -> Vec<(String, String)> {
    line.split_whitespace()
        .skip(1)
        .filter_map(|field| {
            let (name, value) = field.split_once('=')?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}
