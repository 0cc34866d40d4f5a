//! Standard output of the client verbs, and the one place where a closed stdout ends them.
//!
//! Rust ignores SIGPIPE, so when the reader of a pipe goes away (`hangwatch logs | head -1`,
//! `hangwatch events -f | grep -m1 x`) a write fails with `EPIPE` instead of killing the
//! process. The verbs write through `?` and return the error; [`finish`] turns a broken pipe
//! into a quiet exit 0, as the shell's SIGPIPE death would look to a pipeline, and prints any
//! other error once. `println!` is not used: it panics on `EPIPE`.

use std::io::{self, IsTerminal, Write};

use hangwatch_protocol::exit_code;

use crate::cli::ColorArg;

/// Writes `text` to stdout at once and flushes it (a verb that prints one reply).
pub fn print(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// [`finish`] for a verb that printed with `result` and would otherwise end with `code`.
pub fn exit_code(result: io::Result<()>, code: i32) -> i32 {
    finish(result.map(|()| code).map_err(anyhow::Error::from))
}

/// A buffered stdout; flush it after each batch when following.
pub fn stdout() -> io::BufWriter<io::StdoutLock<'static>> {
    io::BufWriter::with_capacity(64 * 1024, io::stdout().lock())
}

/// The exit code of a verb: its own on success, 0 when stdout was closed under it, 125
/// (hangwatch failed) after printing any other error as `hangwatch: …`.
pub fn finish(result: anyhow::Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => 0,
        Err(err) => {
            eprintln!("hangwatch: {err:#}");
            exit_code::HANGWATCH_FAILED
        }
    }
}

/// Whether `err` is, or was caused by, a write to a closed pipe.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|err| err.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Whether to colour: `always`, `never`, or `auto` (stdout is a terminal and `NO_COLOR` is
/// unset or empty, as no-color.org asks).
#[must_use]
pub fn use_color(arg: ColorArg) -> bool {
    match arg {
        ColorArg::Always => true,
        ColorArg::Never => false,
        ColorArg::Auto => {
            io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

/// Pads `text` with spaces to `width` characters.
pub fn pad(out: &mut impl Write, text: &str, width: usize) -> io::Result<()> {
    out.write_all(text.as_bytes())?;
    let len = text.chars().count();
    for _ in len..width {
        out.write_all(b" ")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_anywhere_in_the_chain_is_a_clean_end() {
        let err = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("write the logs");
        assert_eq!(finish(Err(err)), 0);
        let err = anyhow::anyhow!("no such service");
        assert_eq!(finish(Err(err)), exit_code::HANGWATCH_FAILED);
        assert_eq!(finish(Ok(3)), 3);
    }
}
