//! Starting a program in a process group of its own.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::pid::ProcessId;
use crate::sys;
use crate::user::RunAs;

/// What to run.
#[derive(Debug)]
pub struct ProgramCommand {
    /// The program, looked up in `PATH` when it has no `/`.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Variables added to (or replacing in) hangwatch's own environment.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory; hangwatch's own when `None`.
    pub cwd: Option<PathBuf>,
    /// Set this variable to the program's own PID (`WATCHDOG_PID`, as systemd does).
    pub pid_env: Option<String>,
    /// The program's standard input; hangwatch's own when `None`.
    pub stdin: Option<std::os::fd::OwnedFd>,
    /// The program's standard output; hangwatch's own when `None`.
    pub stdout: Option<std::os::fd::OwnedFd>,
    /// The program's standard error; hangwatch's own when `None`.
    pub stderr: Option<std::os::fd::OwnedFd>,
    /// Run as this user (needs root, or `CAP_SETUID` and `CAP_SETGID`); hangwatch's own when
    /// `None`. The login variables (`HOME`, `USER`, `LOGNAME`, `SHELL`) then default to the
    /// user's; `env` still wins.
    pub run_as: Option<RunAs>,
}

impl ProgramCommand {
    /// A command from argv: the first element is the program.
    #[must_use]
    pub fn from_argv(argv: &[OsString]) -> Option<ProgramCommand> {
        let (program, args) = argv.split_first()?;
        Some(ProgramCommand {
            program: program.clone(),
            args: args.to_vec(),
            env: Vec::new(),
            cwd: None,
            pid_env: None,
            stdin: None,
            stdout: None,
            stderr: None,
            run_as: None,
        })
    }
}

/// How to start it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpawnOptions {
    /// If hangwatch's standard input is a terminal and hangwatch is in its foreground, make the
    /// program's group the foreground group, so it can read the terminal and gets Ctrl-C
    /// directly, as a job started by a shell would (see [`Foreground`]).
    pub foreground_tty: bool,
    /// Kill the program with `SIGKILL` if hangwatch dies (`PR_SET_PDEATHSIG`). This follows the
    /// *thread* that spawned it: spawn only from a thread that lives as long as hangwatch.
    pub die_with_parent: bool,
}

/// A limit of open files (`RLIMIT_NOFILE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFilesLimit {
    /// The limit in force, which the process may raise up to `hard`.
    pub soft: u64,
    /// The ceiling (raised only with `CAP_SYS_RESOURCE`).
    pub hard: u64,
}

impl OpenFilesLimit {
    /// This process's limit.
    pub fn current() -> io::Result<OpenFilesLimit> {
        let (soft, hard) = sys::open_files_limit()?;
        Ok(OpenFilesLimit { soft, hard })
    }

    /// Makes this the process's limit (and that of the programs it starts from now on, unless
    /// [`raise_open_files_limit`] has recorded another for them).
    pub fn apply(self) -> io::Result<()> {
        sys::set_open_files_limit(self.soft, self.hard)
    }
}

/// The limit programs get back before exec, once [`raise_open_files_limit`] raised hangwatch's.
static PROGRAMS_OPEN_FILES: OnceLock<OpenFilesLimit> = OnceLock::new();

/// Raises this process's soft limit of open files to its hard limit, and makes every program
/// [`spawn`]ed from now on start with the limit as it was. Returns the limit as it was.
///
/// A supervisor holds a few descriptors per service (pipes, pidfds, log files), so the usual
/// soft limit of 1024 runs out at a few hundred services; the programs themselves keep 1024
/// because some break above it (`select(2)` cannot watch a descriptor past 1023). systemd does
/// the same for itself and its services. Calling it again changes nothing.
pub fn raise_open_files_limit() -> io::Result<OpenFilesLimit> {
    if let Some(original) = PROGRAMS_OPEN_FILES.get() {
        return Ok(*original);
    }
    let original = OpenFilesLimit::current()?;
    if original.soft < original.hard {
        OpenFilesLimit {
            soft: original.hard,
            hard: original.hard,
        }
        .apply()?;
        let _ = PROGRAMS_OPEN_FILES.set(original);
    }
    Ok(original)
}

/// A program started by [`spawn`]. It is not reaped here: see [`crate::reap`].
#[derive(Debug)]
pub struct Spawned {
    /// The program's identity.
    pub id: ProcessId,
    /// Its process group: its own PID.
    pub pgid: i32,
    /// Set when the program was given the terminal; restores it when dropped.
    pub foreground: Option<Foreground>,
}

/// Why a program could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// No such program (exit code 127).
    #[error("command not found: {program}")]
    NotFound {
        /// The program as given.
        program: String,
    },
    /// The program exists but cannot be executed (exit code 126).
    #[error("cannot execute {program}: {source}")]
    NotExecutable {
        /// The program as given.
        program: String,
        /// What `execve` said.
        source: io::Error,
    },
    /// The program could not take the identity of its user (hangwatch is not root).
    #[error("cannot run as user `{user}`: {source}")]
    Credentials {
        /// The user's name.
        user: String,
        /// What `setgroups`, `setgid` or `setuid` said.
        source: io::Error,
    },
    /// Anything else went wrong.
    #[error("failed to {about}: {source}")]
    Io {
        /// What was being done.
        about: &'static str,
        /// The underlying error.
        source: io::Error,
    },
}

impl SpawnError {
    /// Whether the start failed for want of something on hangwatch's side (descriptors for
    /// its pipes, memory, or a process slot: `EMFILE`, `ENFILE`, `ENOMEM`, `EAGAIN` from
    /// `fork`), not because of the program.
    #[must_use]
    pub fn is_local_shortage(&self) -> bool {
        let SpawnError::Io { source, .. } = self else {
            return false;
        };
        source.raw_os_error().is_some_and(|code| {
            [
                nix::errno::Errno::EMFILE,
                nix::errno::Errno::ENFILE,
                nix::errno::Errno::ENOMEM,
                nix::errno::Errno::EAGAIN,
            ]
            .contains(&nix::errno::Errno::from_raw(code))
        })
    }
}

/// Starts `command` as the leader of a new process group.
///
/// Standard input, output and error are inherited untouched. The child's signal mask and
/// dispositions are reset by std before `exec`, and its limit of open files is the one
/// hangwatch had before [`raise_open_files_limit`], if that was called.
pub fn spawn(command: ProgramCommand, options: SpawnOptions) -> Result<Spawned, SpawnError> {
    let own_pgrp = nix::unistd::getpgrp().as_raw();
    let take_terminal = options.foreground_tty && sys::terminal_foreground(0) == Some(own_pgrp);

    let mut cmd = Command::new(&command.program);
    cmd.args(&command.args).process_group(0);
    if let Some(cwd) = &command.cwd {
        cmd.current_dir(cwd);
    }
    if let Some(fd) = command.stdin {
        cmd.stdin(fd);
    }
    if let Some(fd) = command.stdout {
        cmd.stdout(fd);
    }
    if let Some(fd) = command.stderr {
        cmd.stderr(fd);
    }
    // The environment is built here, before fork, and installed by the pre-exec hook, because
    // one variable (the PID) can only be known in the child. Without changes, the child simply
    // inherits hangwatch's environment.
    let login_env: Vec<(OsString, OsString)> = command
        .run_as
        .as_ref()
        .map(|user| {
            user.login_env()
                .into_iter()
                .filter(|(name, _)| !command.env.iter().any(|(set, _)| set == name))
                .map(|(name, value)| (OsString::from(name), value))
                .collect()
        })
        .unwrap_or_default();
    let env = if command.env.is_empty() && command.pid_env.is_none() && login_env.is_empty() {
        None
    } else {
        let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| {
                !command.env.iter().any(|(set, _)| set == k)
                    && !login_env.iter().any(|(set, _)| set == k)
                    && command
                        .pid_env
                        .as_deref()
                        .is_none_or(|pid_var| k != pid_var)
            })
            .collect();
        vars.extend(login_env);
        vars.extend(command.env.iter().cloned());
        Some(sys::ChildEnv::new(vars, command.pid_env.as_deref()))
    };
    let credentials = command.run_as.as_ref().map(|user| sys::ChildCredentials {
        uid: user.uid,
        gid: user.gid,
        groups: user.groups.clone(),
    });
    sys::configure_child(
        &mut cmd,
        sys::ChildSetup {
            foreground_tty: take_terminal,
            die_with_parent: options.die_with_parent,
            parent_pid: std::process::id() as i32,
            open_files: PROGRAMS_OPEN_FILES
                .get()
                .map(|limit| (limit.soft, limit.hard)),
        },
        env,
        credentials,
    );

    let program = command.program.to_string_lossy().into_owned();
    let child = cmd.spawn().map_err(|source| match &command.run_as {
        // EPERM comes from the switch of user; `execve` says EACCES for what it may not run.
        Some(user) if source.raw_os_error() == Some(libc::EPERM) => SpawnError::Credentials {
            user: user.name.clone(),
            source,
        },
        _ => classify(program, source),
    })?;
    // std's `Child` is dropped without waiting: dropping neither kills nor reaps, and reaping
    // belongs to `reap_exited` alone.
    let pid = child.id() as i32;
    drop(child);

    let id = ProcessId::of(pid)
        .map_err(|source| SpawnError::Io {
            about: "read the new program's /proc entry",
            source,
        })?
        .ok_or_else(|| SpawnError::Io {
            about: "find the new program in /proc",
            source: io::Error::from(io::ErrorKind::NotFound),
        })?;

    let foreground = if take_terminal {
        // The child already took the terminal before exec; doing it here too closes the race
        // in which we would act on the terminal before the child got there (as shells do).
        let _ = sys::give_terminal(0, pid);
        Some(Foreground {
            restore_to: own_pgrp,
        })
    } else {
        None
    };

    Ok(Spawned {
        id,
        pgid: pid,
        foreground,
    })
}

fn classify(program: String, source: io::Error) -> SpawnError {
    match source.kind() {
        io::ErrorKind::NotFound => SpawnError::NotFound { program },
        io::ErrorKind::PermissionDenied | io::ErrorKind::IsADirectory => {
            SpawnError::NotExecutable { program, source }
        }
        _ if source.raw_os_error() == Some(libc::ENOEXEC) => {
            SpawnError::NotExecutable { program, source }
        }
        _ => SpawnError::Io {
            about: "start the program",
            source,
        },
    }
}

/// The program's group holds the terminal; dropping this gives it back to hangwatch's group.
///
/// Keystroke signals (Ctrl-C, Ctrl-\) then reach the program directly, as with any shell job,
/// rather than through hangwatch.
#[derive(Debug)]
pub struct Foreground {
    restore_to: i32,
}

impl Drop for Foreground {
    fn drop(&mut self) {
        if let Err(err) = sys::give_terminal(0, self.restore_to) {
            tracing::debug!(%err, "could not take the terminal back");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the environment of `pid` once its exec is done (bounded wait).
    fn environ_of(pid: i32, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let env = String::from_utf8_lossy(&env).replace('\0', "\n");
            if env.contains(needle) || std::time::Instant::now() > deadline {
                return env;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn child_gets_added_variables_and_its_own_pid() {
        let mut command =
            ProgramCommand::from_argv(&["sleep".into(), "30".into()]).expect("command");
        command.env.push(("HANGWATCH_TEST_VAR".into(), "42".into()));
        command.pid_env = Some("WATCHDOG_PID".into());
        let spawned = spawn(command, SpawnOptions::default()).expect("spawn");
        let pid = spawned.id.pid;
        let env = environ_of(pid, "HANGWATCH_TEST_VAR");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        assert!(env.contains("HANGWATCH_TEST_VAR=42\n"), "{env}");
        assert!(env.contains(&format!("WATCHDOG_PID={pid}\n")), "{env}");
        assert!(env.contains("PATH="), "inherited variables are kept: {env}");
        assert_eq!(spawned.pgid, pid, "the program leads its own group");
    }

    /// The `Uid:`, `Gid:` and `Groups:` lines of `/proc/PID/status`, once its exec is done.
    fn ids_of(pid: i32, program: &str) -> (String, String, String) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let line = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                    .unwrap_or_default()
            };
            if status.contains(&format!("Name:\t{program}")) || std::time::Instant::now() > deadline
            {
                return (line("Uid:"), line("Gid:"), line("Groups:"));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn child_runs_as_the_user_with_its_groups_and_login_variables() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: switching user needs root");
            return;
        }
        let nobody = RunAs::lookup("nobody").expect("user nobody");
        let mut command =
            ProgramCommand::from_argv(&["sleep".into(), "5".into()]).expect("command");
        command.env.push(("SHELL".into(), "/bin/kept".into()));
        command.run_as = Some(nobody.clone());
        // Spawned from a thread that then ends: the parent-death signal must survive the
        // switch of user, so the program is killed when the thread is gone (rather than ending
        // by itself after 5 s, which bounds the wait if it is not).
        let spawned = std::thread::spawn(move || {
            spawn(
                command,
                SpawnOptions {
                    foreground_tty: false,
                    die_with_parent: true,
                },
            )
            .expect("spawn")
        })
        .join()
        .expect("spawning thread");
        let pid = nix::unistd::Pid::from_raw(spawned.id.pid);
        let status = nix::sys::wait::waitpid(pid, None).expect("wait");
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Signaled(pid, nix::sys::signal::SIGKILL, false),
            "killed when the thread that spawned it ended"
        );

        let mut command =
            ProgramCommand::from_argv(&["sleep".into(), "30".into()]).expect("command");
        command.env.push(("SHELL".into(), "/bin/kept".into()));
        command.run_as = Some(nobody.clone());
        let spawned = spawn(command, SpawnOptions::default()).expect("spawn");
        let pid = spawned.id.pid;
        let (uid, gid, groups) = ids_of(pid, "sleep");
        let env = environ_of(pid, "LOGNAME=");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        let n = nobody.uid;
        let g = nobody.gid;
        assert_eq!(uid, format!("{n} {n} {n} {n}"));
        assert_eq!(gid, format!("{g} {g} {g} {g}"));
        let mut want: Vec<String> = nobody.groups.iter().map(u32::to_string).collect();
        want.sort();
        let mut got: Vec<String> = groups.split_whitespace().map(str::to_owned).collect();
        got.sort();
        assert_eq!(got, want, "supplementary groups as initgroups sets them");
        assert!(
            env.contains(&format!("HOME={}\n", nobody.home.display())),
            "{env}"
        );
        assert!(
            env.contains("USER=nobody\n") && env.contains("LOGNAME=nobody\n"),
            "{env}"
        );
        assert!(
            env.contains("SHELL=/bin/kept\n"),
            "the command's own env wins: {env}"
        );
    }

    /// The soft and hard "Max open files" of `/proc/PID/limits`.
    fn open_files_of(pid: i32) -> (u64, u64) {
        let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
        let line = text
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .expect("an open files line");
        let mut numbers = line["Max open files".len()..]
            .split_whitespace()
            .map(|n| n.parse::<u64>().expect("a number"));
        (numbers.next().expect("soft"), numbers.next().expect("hard"))
    }

    #[test]
    fn programs_start_with_the_limit_of_open_files_hangwatch_had_before_raising_it() {
        let hard = OpenFilesLimit::current().expect("getrlimit").hard;
        let low = (hard / 2).min(1024);
        OpenFilesLimit { soft: low, hard }
            .apply()
            .expect("lower the soft limit");
        let original = raise_open_files_limit().expect("raise");
        assert_eq!(original, OpenFilesLimit { soft: low, hard });
        assert_eq!(
            OpenFilesLimit::current().expect("getrlimit"),
            OpenFilesLimit { soft: hard, hard }
        );
        assert_eq!(raise_open_files_limit().expect("again"), original);
        let command = ProgramCommand::from_argv(&["sleep".into(), "30".into()]).expect("command");
        let spawned = spawn(command, SpawnOptions::default()).expect("spawn");
        let pid = spawned.id.pid;
        let limits = open_files_of(pid);
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        assert_eq!(limits, (low, hard));
        assert_eq!(open_files_of(std::process::id() as i32), (hard, hard));
    }
}
