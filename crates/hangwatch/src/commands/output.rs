//! Writing to stdout when the reader may go away.
//!
//! Rust ignores `SIGPIPE`, so a write to a closed pipe fails with `EPIPE` instead of killing the
//! process, and `println!` panics on it. `hangwatch status | head -1` must end quietly with
//! status 0, as `ls | head` does (ripgrep's `main.rs` treats a broken pipe the same way), so
//! commands write through [`print`] and map its result with [`exit_code`].

use std::io::{self, IsTerminal, Write};

use hangwatch_protocol::exit_code;

use crate::cli::ColorArg;

/// Writes `text` to stdout and flushes it.
pub fn print(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// The exit code of a command that printed with `result` and would otherwise end with `code`:
/// a broken pipe is a clean end (0), any other write error is hangwatch's failure (125).
pub fn exit_code(result: io::Result<()>, code: i32) -> i32 {
    match result {
        Ok(()) => code,
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(err) => {
            eprintln!("hangwatch: cannot write to stdout: {err}");
            exit_code::HANGWATCH_FAILED
        }
    }
}

/// Whether to colour stdout: `always`, `never`, or (`auto`) when stdout is a terminal and
/// `NO_COLOR` is unset or empty (<https://no-color.org>).
pub fn use_color(arg: ColorArg) -> bool {
    match arg {
        ColorArg::Always => true,
        ColorArg::Never => false,
        ColorArg::Auto => {
            io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}
