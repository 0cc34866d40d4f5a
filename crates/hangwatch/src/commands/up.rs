//! `hangwatch up`: the supervisor, in the foreground or (`--detach`) in the background.
//!
//! # Detaching
//!
//! `--detach` does not fork: a program that may have threads must not continue after `fork`
//! in the child. It starts the current binary again (`/proc/self/exe`, so a binary replaced
//! on disk since does not matter) as `hangwatch up -f FILE --daemon-ready-fd N`, with stdin
//! from `/dev/null` and stdout and stderr appended to `STATE_DIR/hangwatch.log`. N is the write
//! end of a pipe, inherited by number; the daemon makes itself a session leader (`setsid`: no
//! controlling terminal, so closing the terminal sends it no SIGHUP and Ctrl-C in the shell
//! does not reach it) and hands the pipe to the supervisor, which writes `started` once no
//! service is waiting or starting. The parent waits for that line: then it asks the new
//! supervisor for its status, prints it and exits 0. If the pipe closes without it, the
//! daemon has ended (a bad config, a state directory in use): the parent reaps it, prints the
//! end of its log, and exits with its status.
//!
//! The parent never takes the state directory's lock; the daemon does, so a second `up` for
//! the same directory is refused by the daemon with the holder's PID, and the parent shows it.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hangwatch_config::Config;
use hangwatch_protocol::control::{Client, Reply, Request};
use hangwatch_protocol::exit_code;
use hangwatch_supervisor::up::{UpSpec, View, up};

use crate::cli::{LogFormat, UpArgs};
use crate::commands::{client, control, out, status};

/// The log of a detached supervisor, in its state directory.
const LOG_NAME: &str = "hangwatch.log";

/// How many lines of that log a failed `--detach` shows.
const TAIL_LINES: usize = 20;

/// How long a daemon that closed its ready pipe without `started` may take to end.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// Loads the config, supervises until the shutdown, and returns the supervisor's exit code:
/// 0 after a requested shutdown (or when every service ended well), 1 when a service gave up
/// with `on_give_up = "shutdown"` or the services ended in failure, 125 when hangwatch could not
/// start (a bad config, a state directory in use).
pub fn main(args: &UpArgs) -> i32 {
    if args.detach {
        return detach(args);
    }
    let ready_fd = match args.daemon_ready_fd {
        Some(fd) => match become_daemon(fd) {
            Ok(ready) => ready,
            Err(err) => {
                eprintln!("hangwatch: cannot run in the background: {err}");
                return exit_code::HANGWATCH_FAILED;
            }
        },
        None => None,
    };
    let config = match Config::load(&args.file)
        .map_err(|e| e.to_string())
        .and_then(|mut config| {
            with_http(&mut config, args.http)?;
            Ok(config)
        }) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return exit_code::HANGWATCH_FAILED;
        }
    };
    let view = if args.daemon_ready_fd.is_some() {
        // Its stdout is hangwatch.log, which nothing rotates: keep the services' output in
        // their own (rotated) logs and the events in events.jsonl only.
        View::Quiet
    } else if args.log_format == LogFormat::Json {
        View::Json { output: true }
    } else if args.json {
        View::Json { output: false }
    } else {
        View::Lines {
            color: out::use_color(args.color),
        }
    };
    let spec = UpSpec {
        config,
        view,
        diagnose_sample: Duration::from_millis(200),
        ready_fd,
        allow_root_control: args.allow_root_control,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hangwatch: cannot start the event loop: {err}");
            return exit_code::HANGWATCH_FAILED;
        }
    };
    let result = runtime.block_on(up(spec));
    // A diagnosis abandoned during the shutdown may still be reading /proc: do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(outcome) => outcome.exit_code,
        Err(err) => {
            eprintln!("hangwatch: {err}");
            exit_code::HANGWATCH_FAILED
        }
    }
}

/// Applies `up --http ADDR` over the config's `http`, with the config's rule: an address other
/// than loopback needs `http_token_file`.
fn with_http(config: &mut Config, listen: Option<std::net::SocketAddr>) -> Result<(), String> {
    let Some(listen) = listen else {
        return Ok(());
    };
    let token_file = config.http.as_ref().and_then(|h| h.token_file.clone());
    let open = config
        .http
        .as_ref()
        .map(|h| h.open.clone())
        .unwrap_or_default();
    if !listen.ip().is_loopback() && token_file.is_none() {
        return Err(format!(
            "hangwatch: --http {listen} is not a loopback address, so the config needs \
             `http_token_file` (every request must then carry `Authorization: Bearer TOKEN`)"
        ));
    }
    config.http = Some(hangwatch_config::Http {
        listen,
        token_file,
        open,
    });
    Ok(())
}

/// In the re-executed daemon: leaves the parent's session and takes the ready pipe.
fn become_daemon(fd: i32) -> io::Result<Option<OwnedFd>> {
    // Fails only for a process-group leader; the parent starts us inside its own group.
    nix::unistd::setsid().map_err(io::Error::from)?;
    take_ready_fd(fd)
}

/// Takes ownership of the inherited pipe `fd`, close-on-exec so that no service inherits it.
///
/// Without `unsafe` (which this crate forbids) a number cannot become an `OwnedFd`, so the pipe
/// is opened again through `/proc/self/fd/N` (Linux opens the pipe itself, as for a FIFO) and
/// the inherited number is closed. `Ok(None)` when the reader is gone already (the user
/// interrupted `up --detach`): the daemon runs on and tells no one.
fn take_ready_fd(fd: i32) -> io::Result<Option<OwnedFd>> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let link = Path::new("/proc/self/fd").join(fd.to_string());
    let what = std::fs::read_link(&link)?;
    if !what.to_string_lossy().starts_with("pipe:") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("file descriptor {fd} is not a pipe"),
        ));
    }
    // Non-blocking, so that a pipe without a reader fails with ENXIO instead of blocking.
    let reopened = OpenOptions::new()
        .write(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(&link);
    nix::unistd::close(fd).map_err(io::Error::from)?;
    match reopened {
        Ok(file) => {
            fcntl(&file, FcntlArg::F_SETFL(OFlag::empty())).map_err(io::Error::from)?;
            Ok(Some(file.into()))
        }
        Err(err) if err.raw_os_error() == Some(nix::errno::Errno::ENXIO as i32) => Ok(None),
        Err(err) => Err(err),
    }
}

/// `hangwatch up --detach`.
fn detach(args: &UpArgs) -> i32 {
    let config = match Config::load(&args.file)
        .map_err(|e| e.to_string())
        .and_then(|mut config| {
            with_http(&mut config, args.http)?;
            Ok(config)
        }) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return exit_code::HANGWATCH_FAILED;
        }
    };
    let log_path = config.state_dir.join(LOG_NAME);
    let (mut child, ready, log_start) =
        match spawn_daemon(&config, &log_path, args.allow_root_control, args.http) {
            Ok(spawned) => spawned,
            Err(err) => {
                eprintln!("hangwatch: cannot start the supervisor in the background: {err}");
                return exit_code::HANGWATCH_FAILED;
            }
        };
    if wait_started(ready) {
        return report_started(&config, &log_path, &mut child, args.json);
    }
    // The pipe closed without `started`: the daemon has ended (it held the only copy of the
    // write end), or it dropped the pipe without keeping the contract; do not hang on the
    // latter.
    let ended = hangwatch_process::ProcessId::of(child.id() as i32)
        .ok()
        .flatten()
        .is_none_or(|id| control::wait_for_exit(id, EXIT_WAIT));
    if !ended {
        eprintln!(
            "hangwatch: the supervisor (pid {}) closed its ready pipe without saying that its \
             services started, and still runs; see `hangwatch status` and {}",
            child.id(),
            log_path.display()
        );
        return client::FAILED;
    }
    let code = match child.wait() {
        Ok(status) => status
            .code()
            .unwrap_or_else(|| exit_code::for_signal(status.signal().unwrap_or(0))),
        Err(err) => {
            eprintln!("hangwatch: cannot wait for the supervisor: {err}");
            exit_code::HANGWATCH_FAILED
        }
    };
    eprintln!(
        "hangwatch: the supervisor ended before its services started (exit status {code}); {}:",
        log_path.display()
    );
    for line in tail(&log_path, log_start, TAIL_LINES) {
        eprintln!("  {line}");
    }
    code
}

/// Starts the daemon; returns it, the read end of its ready pipe, and where its log began.
fn spawn_daemon(
    config: &Config,
    log_path: &Path,
    allow_root: bool,
    http: Option<std::net::SocketAddr>,
) -> io::Result<(Child, File, u64)> {
    use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
    std::fs::create_dir_all(&config.state_dir)?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log_path)?;
    let log_start = log.metadata()?.len();
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    // The write end alone is inherited, under its own number. This process has no other
    // thread that could spawn a program in between and leak it.
    fcntl(&write, FcntlArg::F_SETFD(FdFlag::empty())).map_err(io::Error::from)?;
    let mut command = Command::new("/proc/self/exe");
    command
        .arg0("hangwatch")
        .arg("up")
        .arg("-f")
        .arg(&config.path)
        .args(["--color", "never", "--daemon-ready-fd"])
        .arg(write.as_raw_fd().to_string())
        .args(allow_root.then_some("--allow-root-control"))
        .args(http.map(|addr| format!("--http={addr}")))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let child = command.spawn()?;
    // Our copies go now: only the daemon holds the write end, so its end is our EOF.
    drop(command);
    drop(write);
    Ok((child, File::from(read), log_start))
}

/// Reads the ready pipe until `started` (true) or its end (false).
fn wait_started(ready: File) -> bool {
    let mut reader = BufReader::new(ready);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return false,
            Ok(_) if line.trim_end() == "started" => return true,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Prints where the supervisor runs and its status table (or one JSON object).
fn report_started(config: &Config, log_path: &Path, child: &mut Child, json: bool) -> i32 {
    let pid = child.id();
    let who = format!("hangwatch {}", env!("CARGO_PKG_VERSION"));
    let status = Client::connect(&config.state_dir, &who, Duration::from_secs(5))
        .and_then(|mut client| client.call(&Request::Status { service: None }));
    let status = match status {
        Ok(Reply::Status(status)) => Some(status),
        Ok(reply) => {
            eprintln!("hangwatch: unexpected reply to status: {reply:?}");
            None
        }
        Err(err) => {
            // It may have ended already (every service a task that finished, and an
            // `on_give_up = "shutdown"`): then say how.
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!(
                    "hangwatch: the supervisor started its services and has ended already ({status})"
                );
                return status.code().unwrap_or(exit_code::HANGWATCH_FAILED);
            }
            eprintln!("hangwatch: the supervisor runs but did not answer: {err}");
            None
        }
    };
    let text = if json {
        let value = serde_json::json!({
            "pid": pid,
            "state_dir": config.state_dir,
            "log": log_path,
            "status": status,
        });
        format!("{value:#}\n")
    } else {
        let mut text = format!(
            "hangwatch runs in the background: pid {pid}, state directory {}\n",
            config.state_dir.display()
        );
        if let Some(status) = &status {
            text.push_str(&status::render(status, false));
        }
        text
    };
    out::exit_code(out::print(&text), 0)
}

/// The last `count` lines of `path` written after byte `from`.
fn tail(path: &Path, from: u64, count: usize) -> Vec<String> {
    let mut text = String::new();
    let read = File::open(path).and_then(|mut file| {
        file.seek(io::SeekFrom::Start(from))?;
        file.read_to_string(&mut text)
    });
    if read.is_err() || text.trim().is_empty() {
        return vec![format!("(nothing in {})", path.display())];
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..]
        .iter()
        .map(|line| (*line).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_what_this_run_wrote() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join(LOG_NAME);
        std::fs::write(&log, "old run\n").expect("write");
        let from = std::fs::metadata(&log).expect("stat").len();
        assert_eq!(
            tail(&log, from, 3),
            [format!("(nothing in {})", log.display())]
        );
        std::fs::write(&log, "old run\na\nb\nc\nd\n").expect("write");
        assert_eq!(tail(&log, from, 3), ["b", "c", "d"]);
    }

    #[test]
    fn a_ready_fd_must_be_a_pipe() {
        let file = File::open("/dev/null").expect("open");
        let err = take_ready_fd(file.as_raw_fd()).expect_err("not a pipe");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_ready_pipe_is_taken_and_its_number_closed() {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        // What the daemon inherits: a bare number that nothing in the process owns.
        let number = std::os::fd::IntoRawFd::into_raw_fd(write);
        let taken = take_ready_fd(number)
            .expect("take")
            .expect("a reader is there");
        assert_ne!(
            taken.as_raw_fd(),
            number,
            "a new descriptor of the same pipe"
        );
        let mut file = File::from(taken);
        io::Write::write_all(&mut file, b"started\n").expect("write");
        drop(file);
        assert!(wait_started(File::from(read)));
    }
}
