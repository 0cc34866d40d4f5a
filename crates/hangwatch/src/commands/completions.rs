//! `hangwatch completions SHELL`: a completion script generated from the command definition.

use crate::cli::{self, CompletionsArgs};
use crate::commands::out;

/// Prints the script for `args.shell` on stdout.
pub fn main(args: &CompletionsArgs) -> i32 {
    // The command as run (`cli::command()`), not the derive alone: `logs` and `events` give -f to
    // --follow there, and the script must offer what the parser accepts.
    let mut command = cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "hangwatch", &mut script);
    out::exit_code(out::print(&String::from_utf8_lossy(&script)), 0)
}
