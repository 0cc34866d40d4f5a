//! `hangwatch`: a process supervisor for programs that must not hang.
//!
//! This binary is thin: it parses the command line ([`cli`]), calls the engine in
//! `hangwatch-supervisor`, prints the result and maps it to an exit code. Each subcommand has one
//! file in [`commands`].
#![forbid(unsafe_code)]

mod cli;
mod commands;

use std::process::ExitCode;

use clap::FromArgMatches;
use hangwatch_protocol::exit_code;

fn main() -> ExitCode {
    init_tracing();
    let matches = match cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(err) => return usage_error(&err),
    };
    let cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    let code = match cli.command {
        cli::Command::Run(args) => commands::run::main(args),
        cli::Command::Diagnose(args) => commands::diagnose::main(&args),
        cli::Command::Up(args) => commands::up::main(&args),
        cli::Command::Check(args) => commands::check::main(&args),
        cli::Command::Status(args) => commands::status::main(&args),
        cli::Command::Start(args) => {
            commands::control::service(commands::control::Verb::Start, &args)
        }
        cli::Command::Stop(args) => {
            commands::control::service(commands::control::Verb::Stop, &args)
        }
        cli::Command::Restart(args) => {
            commands::control::service(commands::control::Verb::Restart, &args)
        }
        cli::Command::Down(args) => commands::control::down(&args),
        cli::Command::Reload(args) => commands::control::reload(&args),
        cli::Command::Logs(args) => commands::logs::main(&args),
        cli::Command::Events(args) => commands::events::main(&args),
        cli::Command::Incidents(args) => commands::incidents::main(&args),
        cli::Command::Completions(args) => commands::completions::main(&args),
        cli::Command::Man(args) => commands::man::main(&args),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}

/// `--help` and `--version` exit 0; every other parse error is hangwatch's failure (125), so a
/// caller can tell "hangwatch refused" from anything the program could have returned.
fn usage_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let _ = err.print();
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => ExitCode::SUCCESS,
        _ => ExitCode::from(exit_code::HANGWATCH_FAILED as u8),
    }
}

/// Developer diagnostics go to stderr, filtered by `RUST_LOG` (default: warnings only).
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        // The command as run: `logs` and `events` give -f to --follow there.
        cli::command().debug_assert();
    }
}
