//! The command line, parsed into plain records; validation that needs more than a type lives in
//! each subcommand.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use hangwatch_process::Signal;

/// A process supervisor for programs that must not hang.
#[derive(Debug, Parser)]
#[command(name = "hangwatch", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one program under a hard bound; stop its whole tree and report what happened.
    ///
    /// Standard input, output and error pass through untouched. INT, TERM, HUP, QUIT, USR1,
    /// USR2 and WINCH sent to hangwatch are forwarded to the program's process group; a second
    /// INT or TERM stops the program (stop signal, grace, KILL) and a third kills it at once.
    /// Descendants that escaped with setsid or a double fork are found and stopped too, and
    /// descendants still alive when the program exits are stopped and reported as leftovers.
    /// Helpers that clean up after their program (Python's resource tracker) are killed last.
    /// After every run, hangwatch audits the system objects the program left (see --leaks).
    Run(RunArgs),

    /// Show what a live process and its descendants are waiting on, without stopping them.
    ///
    /// TARGET is a PID, or the name of a service of the running supervisor (which then
    /// diagnoses its program and keeps the report as an incident). Reads /proc twice over a sampling window: every thread's state, kernel wait channel and
    /// the system call it is blocked in (decoded: the lock, the file descriptor and what is at
    /// its other end, the timeout), CPU use and context switches in the window, open files,
    /// memory, Python stacks of CPython processes, the owner of a glibc mutex a thread waits
    /// for, and a verdict naming what the program waits on. The target is never paused.
    Diagnose(DiagnoseArgs),

    /// Supervise the services of a config file, in the foreground.
    ///
    /// Starts the services in dependency order (a dependent starts once its dependencies are
    /// ready), shows their output with a coloured name prefix, restarts them under their policy,
    /// diagnoses and restarts stalled ones, and on INT or TERM shuts everything down in reverse
    /// dependency order within `shutdown_timeout`. Logs, incidents and the event log
    /// (events.jsonl) are kept in the state directory (default .hangwatch/ beside the config).
    Up(UpArgs),

    /// Check a config file without starting anything: every error with its file, line and
    /// column.
    Check(CheckArgs),

    /// Show the running supervisor and its services: state, PID, uptime, restarts, last exit,
    /// heartbeat age against its deadline, last incident.
    Status(StatusArgs),

    /// Start a service that is down; returns once it is ready or failed to start.
    Start(ServiceArgs),

    /// Stop a service (its stop signal, grace, then KILL, whole tree) and keep it down until
    /// `start`; returns once it is down.
    Stop(ServiceArgs),

    /// Stop a service if it runs and start it again; returns once it is ready or failed to
    /// start.
    Restart(ServiceArgs),

    /// Shut the running supervisor down (the bounded shutdown) and report who stopped cleanly
    /// and who had to be killed; returns when it is done.
    Down(DownArgs),

    /// Re-read the config file of the running supervisor: new services start, removed ones
    /// stop, changed ones restart, unchanged ones are not touched. A config with errors is
    /// rejected with their positions and changes nothing.
    Reload(ReloadArgs),

    /// Print the services' output from their log files, interleaved by time; -f follows.
    ///
    /// Reads the state directory, so it works whether or not the supervisor is still running
    /// (a post-mortem). Each service's log is `logs/NAME.log`, rotated to NAME.log.1, .2…;
    /// the last lines are taken across rotations, and -f keeps following through them and
    /// picks up services whose log appears later. Lines are printed as the log holds them
    /// (UTC time, out or err, the text), after the service's name when several are shown.
    Logs(LogsArgs),

    /// Print the event log (events.jsonl): starts, exits, stalls, incidents, restarts,
    /// shutdowns, one line each; -f follows.
    ///
    /// Reads the state directory, rotated event files included, so it works whether or not
    /// the supervisor is still running.
    Events(EventsArgs),

    /// List the incidents of the state directory (diagnoses taken before a stalled service was
    /// stopped), oldest first; `incidents show ID` prints one.
    Incidents(IncidentsArgs),

    /// Print a shell completion script: `source <(hangwatch completions bash)`, or save it
    /// where the shell loads completions from.
    ///
    /// bash: ~/.local/share/bash-completion/completions/hangwatch; zsh: a file `_hangwatch` in
    /// a directory of $fpath; fish: ~/.config/fish/completions/hangwatch.fish.
    Completions(CompletionsArgs),

    /// Print a man page, in roff: `hangwatch man | man -l -`, or save it as hangwatch.1 in a
    /// man1/ directory of $MANPATH.
    ///
    /// Without COMMAND, the page of hangwatch (every subcommand, with a line each); with one,
    /// the page of that subcommand (every option), hangwatch-COMMAND(1).
    Man(ManArgs),
}

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// The subcommand whose page to print (run, up, status, ...) [default: hangwatch's own].
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
}

/// Which supervisor a client verb is about: its config file, or its state directory directly.
///
/// Global, so that it may follow a verb's own subcommand (`incidents show ID --state DIR`).
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// The config file: the supervisor's records are in its `state_dir` (default .hangwatch/
    /// beside it). In `logs` and `events`, where -f follows, only --file.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        default_value = "hangwatch.toml",
        global = true
    )]
    pub file: PathBuf,

    /// The state directory, instead of the config's.
    #[arg(long = "state", value_name = "DIR", global = true)]
    pub state: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Only this service.
    #[arg(value_name = "NAME")]
    pub service: Option<String>,

    #[command(flatten)]
    pub target: TargetArgs,

    /// Colour the states: auto (when stdout is a terminal and NO_COLOR is unset), always or
    /// never.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub color: ColorArg,

    /// Print the supervisor's reply as JSON.
    #[arg(long)]
    pub json: bool,

    /// Answer a health question by the exit status instead of printing the table, for exec
    /// probes: `alive` (the supervisor answers and no service gave up) or `ready` (every
    /// service is ready, none stalled); 0 yes, 1 no, with the reasons on stderr. The same
    /// rules as `/healthz` and `/readyz`.
    #[arg(long, value_name = "WHAT")]
    pub check: Option<CheckArg>,
}

/// The questions of `hangwatch status --check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckArg {
    /// The supervisor answers and no service has given up.
    Alive,
    /// Every service is ready (or ended well) and none is stalled.
    Ready,
}

#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    /// The service.
    #[arg(value_name = "NAME")]
    pub service: String,

    #[command(flatten)]
    pub target: TargetArgs,

    /// Print the supervisor's reply as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Print the supervisor's reply as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Print the supervisor's reply as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Only this service's log.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,

    /// Keep printing lines as they are written, across rotations (until interrupted).
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// How many of the last lines of each service to print first (as tail: 10).
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 10)]
    pub lines: usize,

    /// Colour the service names: auto (when stdout is a terminal and NO_COLOR is unset),
    /// always or never.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub color: ColorArg,

    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Keep printing events as they are logged, across rotations (until interrupted).
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// Only events since this time: a duration ago (10m, 1h30m) or an RFC 3339 time
    /// (2026-11-24T10:00:00Z, 2026-11-24T11:00:00+01:00).
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<std::time::SystemTime>,

    /// Only the last N events (of those since --since).
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub lines: Option<usize>,

    /// Print the records as the log holds them, one JSON object per line.
    #[arg(long)]
    pub json: bool,

    /// Colour alarming events: auto (when stdout is a terminal and NO_COLOR is unset), always
    /// or never.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub color: ColorArg,

    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, clap::Args)]
pub struct IncidentsArgs {
    #[command(subcommand)]
    pub command: Option<IncidentsCommand>,

    /// Print JSON: the list as an array of objects, or (with show) the diagnosis as written.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Subcommand)]
pub enum IncidentsCommand {
    /// Print one incident's report: the verdict, every process and thread with what it
    /// waits on.
    Show {
        /// The incident's ID as `hangwatch incidents` lists it, or a unique prefix of it
        /// (default: the newest).
        #[arg(value_name = "ID")]
        id: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The config file.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        default_value = "hangwatch.toml"
    )]
    pub file: PathBuf,

    /// Colour the service names: auto (when stdout is a terminal and NO_COLOR is unset),
    /// always or never.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub color: ColorArg,

    /// Print the event log's JSON lines on stdout instead of the services' output. With
    /// --detach: print where the supervisor runs and its status as one JSON object.
    #[arg(long)]
    pub json: bool,

    /// What goes to stdout: `text` (the services' output with a name prefix, and the events in
    /// words) or `json` (one JSON object per line for everything: each output line as
    /// `{"at", "service", "stream", "text"}`, each event as in events.jsonl, an incident as its
    /// event with the verdict and the report's path) — what a container's log pipeline wants.
    #[arg(
        long,
        value_name = "FORMAT",
        default_value = "text",
        conflicts_with = "json"
    )]
    pub log_format: LogFormat,

    /// Run in the background, in a session of its own with no terminal; hangwatch's own
    /// messages go to STATE_DIR/hangwatch.log, the services' output to their log files. Returns
    /// once every service has started or failed to start, printing the state directory, the
    /// supervisor's PID and the status table.
    #[arg(long, short = 'd')]
    pub detach: bool,

    /// Serve root on the control socket too (the supervisor's own user is always served).
    #[arg(long)]
    pub allow_root_control: bool,

    /// Serve `/metrics`, `/healthz`, `/readyz`, the JSON API and the status page on this
    /// address (e.g. 127.0.0.1:9464), instead of the config's `http`. An address other than
    /// loopback needs `http_token_file` in the config.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,

    /// Internal: run as the background supervisor of `--detach`, writing `started` to this
    /// file descriptor (a pipe) once no service is waiting or starting.
    #[arg(long, value_name = "FD", hide = true, conflicts_with = "detach")]
    pub daemon_ready_fd: Option<i32>,
}

/// The format of `hangwatch up`'s stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    Text,
    /// JSON lines for a log pipeline.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The config file.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        default_value = "hangwatch.toml"
    )]
    pub file: PathBuf,

    /// Print the result as JSON: `{"ok": true, "services": [...]}` or
    /// `{"ok": false, "errors": [{"file", "line", "column", "message"}]}`.
    #[arg(long)]
    pub json: bool,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorArg {
    /// When stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

#[derive(Debug, clap::Args)]
pub struct DiagnoseArgs {
    /// The process to diagnose (a PID; its descendants are included), or a service of the
    /// running supervisor (a name).
    #[arg(value_name = "TARGET")]
    pub target: DiagnoseTarget,

    /// With a service name: which supervisor to ask.
    #[command(flatten)]
    pub supervisor: TargetArgs,

    /// Print the diagnosis as JSON instead of text.
    #[arg(long)]
    pub json: bool,

    /// The window over which CPU use and context switches are measured [default: 200ms, or
    /// the supervisor's for a service].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub sample: Option<Duration>,

    /// Do not read Python stacks (a PID only).
    #[arg(long)]
    pub no_python: bool,
}

/// What `hangwatch diagnose` looks at: an all-digit argument is a PID, anything else a service
/// name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiagnoseTarget {
    /// A process.
    Pid(i32),
    /// A service of the running supervisor.
    Service(String),
}

impl std::str::FromStr for DiagnoseTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<DiagnoseTarget, String> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse::<i32>()
                .map(DiagnoseTarget::Pid)
                .map_err(|_| format!("{text} is not a valid PID"))
        } else if text.is_empty() {
            Err("a PID or a service name is required".to_owned())
        } else {
            Ok(DiagnoseTarget::Service(text.to_owned()))
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Stop the program once it has run this long (90s, 5m, 1h30m; a bare number is seconds).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// The first signal of a stop, sent to the program's process group and to every escaped
    /// descendant (TERM, INT, HUP, 15, SIGTERM…).
    #[arg(long, value_name = "SIGNAL", default_value = "TERM", value_parser = parse_signal)]
    pub stop_signal: Signal,

    /// How long a stopped tree may take to exit before every survivor gets KILL.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub grace: Duration,

    /// Write a JSON report of the run to PATH (`-` for stderr): command, times, exit status and
    /// reason, every process signalled and how, leftovers, leaked objects.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,

    /// Write the run's outcome as Prometheus series (duration, outcome, exit code, stalls,
    /// leaks) to PATH at the end, atomically, for node_exporter's textfile collector (name it
    /// `*.prom` in the collector's directory).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,

    /// Stall bound: the program must show a heartbeat at least this often. Alone, it arms the
    /// notify watchdog (the program gets WATCHDOG_USEC and must send WATCHDOG=1, as under
    /// systemd's WatchdogSec=); with --heartbeat-file, it bounds the file's age instead.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stall: Option<Duration>,

    /// A soft, earlier bound for every heartbeat source: record a warning and a snapshot of the
    /// program's threads, keep it running, and stop it only at the hard bound.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stall_warn: Option<Duration>,

    /// Let a heartbeat stall wait while the host is starved, at most this long after its
    /// deadline: when CPU or memory pressure (`some avg10` of /proc/pressure/cpu or memory) is
    /// at or above --stall-defer-above, the stop waits, the pressure is read again every 2 s,
    /// and a heartbeat meanwhile clears the stall. Where the kernel reports no pressure it
    /// defers nothing (a note in the report says so).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stall_defer_under_pressure: Option<Duration>,

    /// The pressure that defers a stall, in percent ("25%" or 25; default 25).
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent,
          requires = "stall_defer_under_pressure")]
    pub stall_defer_above: Option<f64>,

    /// Treat the modification time of PATH as the heartbeat (with --stall as its bound). The
    /// path is followed, so atomic replacement (write a temp file, rename) works; a missing
    /// file counts as stale only once the bound has passed since the start.
    #[arg(long, value_name = "PATH", requires = "stall")]
    pub heartbeat_file: Option<PathBuf>,

    /// Treat any byte on stdout or stderr as the heartbeat: this long without output is a
    /// stall. The output is then read by hangwatch and passed through unchanged. When
    /// hangwatch's stdout is a terminal, the program gets a pseudo-terminal (stdout and stderr
    /// merge into it) so that it keeps line-buffering; when it is a pipe or file, the program's
    /// own buffering (C stdio, Python) may hold output back and must be turned off by the user
    /// (for example PYTHONUNBUFFERED=1 or `stdbuf -oL`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stall_on_silence: Option<Duration>,

    /// Read the program's output and pass it on, even when hangwatch's stdout or stderr is a
    /// terminal or a file, so that its last lines (50 lines or 16 KiB per stream) go into the
    /// incident. When both are pipes this is the default, as the program sees a pipe either
    /// way. What it changes for the program: on a terminal it gets a pseudo-terminal in which
    /// stdout and stderr merge; on a file it writes into a pipe (no seeking, and the file is
    /// written by hangwatch).
    #[arg(long)]
    pub read_output: bool,

    /// After the program sends STOPPING=1, it must exit within this long or it is stalled
    /// (default: the --grace).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub exit_grace: Option<Duration>,

    /// How to offer the systemd notify socket in NOTIFY_SOCKET: a socket file in a private
    /// directory, an abstract socket (@name), or none.
    #[arg(long, value_name = "KIND", default_value = "path")]
    pub notify_socket: NotifySocketArg,

    /// What to do about system objects the program leaves behind: POSIX semaphores and shared
    /// memory (/dev/shm), SysV IPC, socket and lock files. `report` lists them (in the summary
    /// and the JSON report); `clean` also removes those attributable to the program (created by
    /// its tree during the run, held by nobody now; never an object that existed before or
    /// belongs to others); `fail` lists them and makes a run that leaked (those objects, or
    /// leftover processes) exit 123 when the program itself succeeded.
    #[arg(long, value_name = "POLICY", default_value = "report")]
    pub leaks: LeaksArg,

    /// Never hand the terminal to the program, even when hangwatch has it. By default a program
    /// run from an interactive shell gets the terminal's foreground (it can read the terminal,
    /// and Ctrl-C reaches it directly, as a job of the shell would).
    #[arg(long)]
    pub no_foreground: bool,

    /// Where incident files go: before a stalled or timed-out program is stopped, hangwatch
    /// diagnoses it (threads, blocked calls, open files, Python stacks, a verdict) and writes
    /// the diagnosis there as text and JSON [default: $XDG_STATE_HOME/hangwatch/incidents or
    /// ~/.local/state/hangwatch/incidents]
    #[arg(long, value_name = "DIR")]
    pub incident_dir: Option<PathBuf>,

    /// The sampling window of that diagnosis (CPU use and context switches are measured over
    /// it; the stop begins after it).
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = parse_duration)]
    pub diagnose_sample: Duration,

    /// Stop a stalled or timed-out program at once, without diagnosing it first.
    #[arg(long, conflicts_with_all = ["incident_dir"])]
    pub no_diagnose: bool,

    /// The program to run and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// What to do about leaked objects.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LeaksArg {
    /// List them.
    Report,
    /// Remove what is attributable to the program, list the rest.
    Clean,
    /// List them; exit 123 instead of 0 when the run leaked.
    Fail,
}

/// Where the notify socket lives.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum NotifySocketArg {
    /// A socket file in a private runtime directory.
    Path,
    /// An abstract socket (`@hangwatch/...`).
    Abstract,
    /// No NOTIFY_SOCKET.
    None,
}

/// A percentage from 0 to 100: `25%` or `25`.
fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().strip_suffix('%').unwrap_or(text.trim()).trim();
    match number.parse::<f64>() {
        Ok(pct) if (0.0..=100.0).contains(&pct) => Ok(pct),
        _ => Err(format!(
            "expected a percentage from 0 to 100 like 25%, found {text}"
        )),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    hangwatch_supervisor::duration::parse_duration(text).map_err(|err| err.to_string())
}

fn parse_since(text: &str) -> Result<std::time::SystemTime, String> {
    crate::commands::time::parse_since(text, std::time::SystemTime::now())
}

fn parse_signal(text: &str) -> Result<Signal, String> {
    text.parse::<Signal>().map_err(|err| err.to_string())
}

/// The clap command with texts computed at run time (the exit-status table).
pub fn command() -> clap::Command {
    let codes = hangwatch_protocol::exit_code::run_exit_codes_table();
    Cli::command()
        .mut_subcommand("run", |run| {
            run.after_help(format!(
                "Exit status:\n{codes}\nExample:\n  hangwatch run --timeout 5m --grace 10s --report run.json -- python3 job.py"
            ))
        })
        // -f follows there, as in tail and journalctl; the config file is --file.
        .mut_subcommand("logs", |logs| logs.mut_arg("file", |file| file.short(None)))
        .mut_subcommand("events", |events| {
            events.mut_arg("file", |file| file.short(None))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diagnose_target_is_a_pid_when_all_digits_and_a_service_otherwise() {
        assert_eq!("1234".parse(), Ok(DiagnoseTarget::Pid(1234)));
        assert_eq!("api".parse(), Ok(DiagnoseTarget::Service("api".into())));
        assert_eq!(
            "worker-2".parse(),
            Ok(DiagnoseTarget::Service("worker-2".into()))
        );
        assert!("99999999999".parse::<DiagnoseTarget>().is_err());
        assert!("".parse::<DiagnoseTarget>().is_err());
    }
}
