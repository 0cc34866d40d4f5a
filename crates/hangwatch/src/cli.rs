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
    Run(RunArgs),
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
    /// reason, every process signalled and how, leftovers.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,

    /// Never hand the terminal to the program, even when hangwatch has it. By default a program
    /// run from an interactive shell gets the terminal's foreground (it can read the terminal,
    /// and Ctrl-C reaches it directly, as a job of the shell would).
    #[arg(long)]
    pub no_foreground: bool,

    /// The program to run and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    hangwatch_supervisor::duration::parse_duration(text).map_err(|err| err.to_string())
}

fn parse_signal(text: &str) -> Result<Signal, String> {
    text.parse::<Signal>().map_err(|err| err.to_string())
}

/// The clap command with texts computed at run time (the exit-status table).
pub fn command() -> clap::Command {
    let codes = hangwatch_protocol::exit_code::run_exit_codes_table();
    Cli::command().mut_subcommand("run", |run| {
        run.after_help(format!(
            "Exit status:\n{codes}\nExample:\n  hangwatch run --timeout 5m --grace 10s --report run.json -- python3 job.py"
        ))
    })
}
