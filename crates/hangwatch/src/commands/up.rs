//! `hangwatch up`: the supervisor in the foreground.

use crate::cli::UpArgs;

/// The supervisor's exit code.
pub fn main(args: &UpArgs) -> i32 {
    let _ = args;
    eprintln!("hangwatch: up is not implemented yet");
    hangwatch_protocol::exit_code::HANGWATCH_FAILED
}
