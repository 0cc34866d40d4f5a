//! Open descriptors of real process trees, resolved to their other ends: pipes between
//! siblings, pipes nobody writes to any more, Unix and TCP connections, files.
//!
//! Every test owns the processes it starts through [`Procs`], which kills each by PID (and
//! reaps it) when the test ends, passing or not; every wait has a deadline.

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hangwatch_diagnose::fds::{Access, FdReport, FdTarget, Holders, TcpState, open_fds};
use nix::fcntl::OFlag;

/// How long a test waits for a process to reach the state it needs.
const DEADLINE: Duration = Duration::from_secs(10);

/// The processes a test started, killed by PID and reaped on drop.
#[derive(Default)]
struct Procs {
    children: Vec<Child>,
    lines: Vec<Option<mpsc::Receiver<String>>>,
}

impl Procs {
    /// Starts `command`; with `piped` stdout, its lines can be awaited with [`Procs::line`].
    fn start(&mut self, mut command: Command) -> usize {
        let mut child = command.spawn().expect("spawn");
        let lines = child.stdout.take().map(|stdout| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        self.children.push(child);
        self.lines.push(lines);
        self.children.len() - 1
    }

    fn pid(&self, i: usize) -> i32 {
        self.children[i].id() as i32
    }

    fn pids(&self) -> Vec<i32> {
        (0..self.children.len()).map(|i| self.pid(i)).collect()
    }

    /// The next line process `i` prints.
    fn raw_line(&self, i: usize) -> String {
        let rx = self.lines[i].as_ref().expect("stdout was piped");
        rx.recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("process {} printed nothing in {DEADLINE:?}", self.pid(i)))
    }

    /// The next line process `i` prints, split into words.
    fn line(&self, i: usize) -> Vec<String> {
        let line = self.raw_line(i);
        line.split_whitespace().map(str::to_owned).collect()
    }

    /// Waits until process `i` has exec'd `program` (its command line no longer the test's).
    fn wait_exec(&self, i: usize, program: &str) {
        let pid = self.pid(i);
        wait_until(&format!("pid {pid} to exec {program}"), || {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).next() == Some(program.as_bytes()))
        });
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.children {
            // `Child::kill` signals this child's PID; it is ours and not reaped yet, so the PID
            // cannot have been reused.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `program` with only the standard streams the test gives it: every other inherited
/// descriptor is closed before `exec`, so that a pipe leaked into the test by whatever runs
/// it (a CI runner, a jobserver) cannot make the tree reach outside itself.
fn clean(program: &str) -> Command {
    const LAUNCH: &str =
        "import os, sys; os.closerange(3, 1 << 20); os.execvp(sys.argv[1], sys.argv[1:])";
    let mut command = Command::new("python3");
    command.args(["-c", LAUNCH, program]);
    command
}

fn python(args: &[&str]) -> Command {
    let mut command = Command::new("python3");
    command
        .arg("fd_holder.py")
        .args(args)
        .current_dir(programs())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    command
}

fn programs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs")
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe2")
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let path =
            std::env::temp_dir().join(format!("hangwatch-fds-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).expect("scratch dir");
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn target(report: &FdReport, pid: i32, fd: i32) -> &FdTarget {
    &report
        .get(pid, fd)
        .unwrap_or_else(|| panic!("fd {fd} of pid {pid} missing from {report:#?}"))
        .target
}

fn holder_pids(holders: &Holders) -> Vec<(i32, i32)> {
    holders.found.iter().map(|h| (h.pid, h.fd)).collect()
}

fn fd_arg(words: &[String], i: usize) -> i32 {
    words[i].parse().expect("fd number")
}

#[test]
fn a_blocked_reader_names_the_sibling_holding_the_write_end() {
    let (read, write) = pipe();
    let mut procs = Procs::default();
    let mut cat = clean("cat");
    cat.stdin(Stdio::from(read))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let reader = procs.start(cat);
    let mut sleep = clean("sleep");
    sleep
        .arg("31")
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::null());
    let writer = procs.start(sleep);
    // The commands owned the test's copies of both ends; they are closed now.
    procs.wait_exec(reader, "cat");
    procs.wait_exec(writer, "sleep");
    let reader_pid = procs.pid(reader);
    wait_until("cat to block in read", || {
        std::fs::read_to_string(format!("/proc/{reader_pid}/wchan"))
            .is_ok_and(|w| w.contains("pipe_read"))
    });

    let report = open_fds(&procs.pids());
    let FdTarget::Pipe {
        inode,
        end,
        other_end,
        same_end,
    } = target(&report, reader_pid, 0)
    else {
        panic!("fd 0 of cat is not a pipe: {report:#?}")
    };
    assert_eq!(*end, Access::Read);
    assert_eq!(holder_pids(other_end), vec![(procs.pid(writer), 1)]);
    assert_eq!(other_end.found[0].command, "sleep 31");
    assert!(same_end.is_empty(), "the reader itself is not listed");
    // Every standard stream of the tree is the pipe or /dev/null: nothing to look for
    // elsewhere.
    assert!(
        !report.searched_system,
        "both ends were in the tree; no system-wide search was needed: {report:#?}"
    );
    assert_eq!(
        target(&report, reader_pid, 0).to_string(),
        format!(
            "pipe:[{inode}] whose write end is held by pid {} (sleep 31)",
            procs.pid(writer)
        )
    );
    // And the other way round: the writer's read end is cat.
    let FdTarget::Pipe { end, other_end, .. } = target(&report, procs.pid(writer), 1) else {
        panic!("fd 1 of sleep is not a pipe")
    };
    assert_eq!(*end, Access::Write);
    assert_eq!(holder_pids(other_end), vec![(reader_pid, 0)]);
}

#[test]
fn a_pipe_whose_writer_exited_has_no_writer() {
    let (read, write) = pipe();
    let mut procs = Procs::default();
    let mut sleep = Command::new("sleep");
    sleep.arg("30").stdin(Stdio::from(read));
    let reader = procs.start(sleep);
    let mut writer = Command::new("true");
    writer.stdout(Stdio::from(write));
    let status = writer.status().expect("run true");
    assert!(status.success());
    drop(writer);
    procs.wait_exec(reader, "sleep");

    let report = open_fds(&procs.pids());
    let pipe = target(&report, procs.pid(reader), 0);
    let FdTarget::Pipe { other_end, .. } = pipe else {
        panic!("not a pipe: {pipe:?}")
    };
    assert!(other_end.is_empty(), "{other_end:?}");
    assert_eq!(
        other_end.unreadable, 0,
        "run as root: every process is readable"
    );
    assert!(
        report.searched_system,
        "no writer can only be said after a full search"
    );
    assert!(pipe.to_string().contains("with no writer"), "{pipe}");
}

#[test]
fn a_pipe_end_held_outside_the_tree_is_found_by_searching_the_system() {
    let (read, write) = pipe();
    let mut procs = Procs::default();
    let mut sleep = Command::new("sleep");
    sleep.arg("30").stdin(Stdio::from(read));
    let reader = procs.start(sleep);
    procs.wait_exec(reader, "sleep");

    // This test process keeps the write end and is not part of the tree asked about.
    let report = open_fds(&procs.pids());
    let FdTarget::Pipe { other_end, .. } = target(&report, procs.pid(reader), 0) else {
        panic!("not a pipe")
    };
    let me = std::process::id() as i32;
    assert!(report.searched_system);
    assert_eq!(
        holder_pids(other_end),
        vec![(me, std::os::fd::AsRawFd::as_raw_fd(&write))]
    );
    drop(write);
}

#[test]
fn a_socketpair_between_two_processes_resolves_each_peer() {
    let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let mut procs = Procs::default();
    let mut first = clean("sleep");
    first
        .arg("30")
        .stdin(Stdio::from(OwnedFd::from(a)))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let first = procs.start(first);
    let mut second = clean("sleep");
    second
        .arg("32")
        .stdin(Stdio::from(OwnedFd::from(b)))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let second = procs.start(second);
    procs.wait_exec(first, "sleep");
    procs.wait_exec(second, "sleep");

    let report = open_fds(&procs.pids());
    let FdTarget::Unix {
        inode: first_inode,
        peer: Some(peer),
        connected: true,
        ..
    } = target(&report, procs.pid(first), 0)
    else {
        panic!("fd 0 is not a connected unix socket with a peer: {report:#?}")
    };
    assert_eq!(holder_pids(&peer.holders), vec![(procs.pid(second), 0)]);
    assert_eq!(peer.holders.found[0].command, "sleep 32");
    let FdTarget::Unix {
        peer: Some(back), ..
    } = target(&report, procs.pid(second), 0)
    else {
        panic!("fd 0 of the second is not a unix socket with a peer")
    };
    assert_eq!(back.inode, *first_inode);
    assert_eq!(holder_pids(&back.holders), vec![(procs.pid(first), 0)]);
    assert!(!report.searched_system);
    assert!(
        target(&report, procs.pid(first), 0)
            .to_string()
            .contains(&format!(
                "connected to pid {} (sleep 32)",
                procs.pid(second)
            )),
        "{}",
        target(&report, procs.pid(first), 0)
    );
}

#[test]
fn a_unix_stream_connection_resolves_the_client_the_server_and_the_listener() {
    let scratch = Scratch::new("unix");
    let path = scratch.0.join("control.sock");
    let path_text = path.to_str().expect("utf-8 path");
    let mut procs = Procs::default();
    let server = procs.start(python(&["unix-server", path_text, "accept"]));
    let listen_fd = fd_arg(&procs.line(server), 1);
    let client = procs.start(python(&["unix-client", path_text]));
    let client_fd = fd_arg(&procs.line(client), 1);
    let conn_fd = fd_arg(&procs.line(server), 1);

    let report = open_fds(&procs.pids());
    let (server_pid, client_pid) = (procs.pid(server), procs.pid(client));
    let FdTarget::Unix {
        listening: true,
        path: Some(listen_path),
        ..
    } = target(&report, server_pid, listen_fd)
    else {
        panic!("not a listener: {report:#?}")
    };
    assert_eq!(listen_path, path_text);

    let FdTarget::Unix {
        peer: Some(peer), ..
    } = target(&report, client_pid, client_fd)
    else {
        panic!("client socket has no peer: {report:#?}")
    };
    assert!(!peer.awaiting_accept);
    assert_eq!(peer.path.as_deref(), Some(path_text));
    assert_eq!(holder_pids(&peer.holders), vec![(server_pid, conn_fd)]);
    assert!(
        peer.holders.found[0]
            .command
            .starts_with("python3 fd_holder.py unix-server"),
        "{:?}",
        peer.holders.found[0]
    );

    let FdTarget::Unix {
        peer: Some(peer), ..
    } = target(&report, server_pid, conn_fd)
    else {
        panic!("accepted socket has no peer")
    };
    assert_eq!(holder_pids(&peer.holders), vec![(client_pid, client_fd)]);
}

#[test]
fn a_connection_the_server_never_accepts_is_reported_waiting_in_its_queue() {
    let scratch = Scratch::new("backlog");
    let path = scratch.0.join("slow.sock");
    let path_text = path.to_str().expect("utf-8 path");
    let mut procs = Procs::default();
    let server = procs.start(python(&["unix-server", path_text, "no-accept"]));
    let listen_fd = fd_arg(&procs.line(server), 1);
    let client = procs.start(python(&["unix-client", path_text]));
    let client_fd = fd_arg(&procs.line(client), 1);

    let report = open_fds(&procs.pids());
    let client_target = target(&report, procs.pid(client), client_fd);
    let FdTarget::Unix {
        peer: Some(peer), ..
    } = client_target
    else {
        panic!("client socket has no peer: {report:#?}")
    };
    assert!(peer.awaiting_accept, "{peer:?}");
    assert_eq!(
        holder_pids(&peer.holders),
        vec![(procs.pid(server), listen_fd)]
    );
    assert!(
        client_target
            .to_string()
            .contains(&format!("not yet accepted by pid {}", procs.pid(server))),
        "{client_target}"
    );
    let listener = target(&report, procs.pid(server), listen_fd);
    let FdTarget::Unix {
        recv_queue: Some(1),
        ..
    } = listener
    else {
        panic!("the listener should count one connection waiting: {listener:?}")
    };
}

#[test]
fn a_tcp_connection_on_loopback_shows_endpoints_state_and_the_other_end() {
    let mut procs = Procs::default();
    let server = procs.start(python(&["tcp-server"]));
    let listening = procs.line(server);
    let port: u16 = listening[1].parse().expect("port");
    let listen_fd = fd_arg(&listening, 2);
    let port_text = port.to_string();
    let client = procs.start(python(&["tcp-client", &port_text]));
    let client_fd = fd_arg(&procs.line(client), 1);
    let conn_fd = fd_arg(&procs.line(server), 1);
    let (server_pid, client_pid) = (procs.pid(server), procs.pid(client));

    let report = open_fds(&procs.pids());
    let listener = target(&report, server_pid, listen_fd);
    let FdTarget::Tcp {
        local,
        remote: None,
        state: TcpState::Listen,
        ..
    } = listener
    else {
        panic!("not a listener: {listener:?}")
    };
    assert_eq!(local.to_string(), format!("127.0.0.1:{port}"));
    assert_eq!(
        listener.to_string(),
        format!("tcp accept on 127.0.0.1:{port}")
    );

    let client_target = target(&report, client_pid, client_fd);
    let FdTarget::Tcp {
        local: client_local,
        remote: Some(remote),
        state: TcpState::Established,
        accepted: false,
        peer,
        ..
    } = client_target
    else {
        panic!("not an established outgoing connection: {client_target:?}")
    };
    assert_eq!(remote.to_string(), format!("127.0.0.1:{port}"));
    assert_eq!(holder_pids(peer), vec![(server_pid, conn_fd)]);
    assert!(
        client_target.to_string().starts_with(&format!(
            "tcp connect to 127.0.0.1:{port} from {client_local}"
        )),
        "{client_target}"
    );

    let FdTarget::Tcp {
        remote: Some(remote),
        accepted: true,
        peer,
        ..
    } = target(&report, server_pid, conn_fd)
    else {
        panic!("not an accepted connection")
    };
    assert_eq!(remote, client_local);
    assert_eq!(holder_pids(peer), vec![(client_pid, client_fd)]);
}

#[test]
fn regular_and_deleted_files_are_named_with_their_mode() {
    let scratch = Scratch::new("files");
    let dir = scratch.0.to_str().expect("utf-8 path");
    let mut procs = Procs::default();
    let holder = procs.start(python(&["files", dir]));
    let words = procs.line(holder);
    let (kept_fd, gone_fd) = (fd_arg(&words, 1), fd_arg(&words, 2));

    let report = open_fds(&procs.pids());
    let pid = procs.pid(holder);
    assert_eq!(
        target(&report, pid, kept_fd),
        &FdTarget::File {
            path: format!("{dir}/kept.log"),
            deleted: false,
            mode: Some(Access::Write),
        }
    );
    let gone = target(&report, pid, gone_fd);
    assert_eq!(
        gone,
        &FdTarget::File {
            path: format!("{dir}/gone.tmp"),
            deleted: true,
            mode: Some(Access::ReadWrite),
        }
    );
    assert_eq!(
        gone.to_string(),
        format!("{dir}/gone.tmp (deleted), read-write")
    );
    // Standard input is /dev/null, opened for reading.
    assert_eq!(target(&report, pid, 0).to_string(), "/dev/null, read");
}

#[test]
fn a_process_that_is_gone_is_left_out() {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id() as i32;
    child.wait().expect("reap");
    let report = open_fds(&[pid]);
    assert!(report.processes.is_empty(), "{report:?}");
    assert!(report.unreadable.is_empty(), "{report:?}");
}

/// Set in the copy of this test binary that runs as another user.
const PROBE_ENV: &str = "HANGWATCH_FDS_PROBE_PID";

#[test]
fn another_users_process_is_reported_unreadable_with_the_reason() {
    if let Ok(pid) = std::env::var(PROBE_ENV) {
        // The copy running as `nobody`: read a root process, print the report.
        let pid: i32 = pid.parse().expect("pid");
        let report = open_fds(&[pid]);
        println!(
            "REPORT {}",
            serde_json::to_string(&report).expect("serialise")
        );
        return;
    }
    let mut procs = Procs::default();
    let mut sleep = Command::new("sleep");
    sleep.arg("30");
    let victim = procs.start(sleep);
    procs.wait_exec(victim, "sleep");
    let pid = procs.pid(victim);

    let report = if nix::unistd::geteuid().is_root() {
        // Root reads everything: run this same test as `nobody` to see what a user sees.
        use std::os::unix::process::CommandExt;
        let mut probe = Command::new(std::env::current_exe().expect("test binary"));
        probe
            .args([
                "--exact",
                "another_users_process_is_reported_unreadable_with_the_reason",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PROBE_ENV, pid.to_string())
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let probe = procs.start(probe);
        let deadline = Instant::now() + DEADLINE;
        loop {
            // libtest prints the test's name and then, on the same line, its output.
            let line = procs.raw_line(probe);
            if let Some((_, json)) = line.split_once("REPORT ") {
                break serde_json::from_str::<FdReport>(json).expect("report json");
            }
            assert!(Instant::now() < deadline, "the probe printed no report");
        }
    } else {
        // Not root: a process of another user is unreadable from here already. The
        // victim is ours, though, so read init's.
        open_fds(&[1])
    };
    assert!(report.processes.is_empty(), "{report:#?}");
    assert_eq!(report.unreadable.len(), 1, "{report:#?}");
    assert!(
        report.unreadable[0].error.starts_with("EACCES"),
        "{:?}",
        report.unreadable[0]
    );
}
