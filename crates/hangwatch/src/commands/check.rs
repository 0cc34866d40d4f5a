//! `hangwatch check`: validate a config file and print every error with its position.

use crate::cli::CheckArgs;

/// 0 when the file is valid, 125 otherwise.
pub fn main(args: &CheckArgs) -> i32 {
    let _ = args;
    eprintln!("hangwatch: check is not implemented yet");
    hangwatch_protocol::exit_code::HANGWATCH_FAILED
}
