//! `hangwatch man [COMMAND]`: a man page in roff, generated from the command definition.

use hangwatch_protocol::exit_code;

use crate::cli::{self, ManArgs};
use crate::commands::out;

/// Prints hangwatch(1), or hangwatch-COMMAND(1) for a subcommand.
pub fn main(args: &ManArgs) -> i32 {
    let command = cli::command();
    let page = match &args.command {
        None => command,
        Some(name) => {
            let Some(sub) = command.find_subcommand(name) else {
                let names: Vec<&str> = command
                    .get_subcommands()
                    .filter(|sub| !sub.is_hide_set())
                    .map(|sub| sub.get_name())
                    .collect();
                eprintln!(
                    "hangwatch: no subcommand {name}; the pages are: {}",
                    names.join(", ")
                );
                return exit_code::HANGWATCH_FAILED;
            };
            // Named as clap_mangen names the pages it refers to (hangwatch-run(1)), with the
            // version of the whole program.
            sub.clone()
                .display_name(format!("hangwatch-{name}"))
                .bin_name(format!("hangwatch {name}"))
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    let man =
        clap_mangen::Man::new(page).source(format!("hangwatch {}", env!("CARGO_PKG_VERSION")));
    let mut roff = Vec::new();
    if let Err(err) = man.render(&mut roff) {
        return out::finish(Err(anyhow::Error::from(err).context("render the man page")));
    }
    out::exit_code(out::print(&String::from_utf8_lossy(&roff)), 0)
}
