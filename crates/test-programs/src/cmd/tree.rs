//! `tree N PIDFILE SECS`: a tree of N processes in all, the root included,
//! several levels deep, all in the root's process group.
//!
//! Each node that must account for `size` processes (itself included) forks
//! up to four children and hands each an even share of the rest. The fan-out
//! is half the rest, between one and four, so that even small trees have
//! grandchildren: 5 processes are a root with two children, each with one
//! child of its own.
//!
//! Every process appends `<pid> <starttime>\n` to PIDFILE with a single
//! `write(2)` on an `O_APPEND` descriptor, so the lines never interleave, and
//! then sleeps SECS. Only the root prints ready, once PIDFILE has N lines.
//! PIDFILE is truncated first, so the count means this run.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;
use std::time::Duration;

use crate::args::Args;
use crate::common::{self, Error};
use crate::sys::{self, Forked};

/// More than enough for any test, and few enough not to exhaust the
/// machine's PIDs by a typo.
const MAX_PROCESSES: usize = 512;

/// How long the root waits for all N lines.
const LINES_WAIT: Duration = Duration::from_secs(10);

/// The most children one node forks.
const MAX_FAN_OUT: usize = 4;

pub(crate) fn run(mut args: Args) -> Result<(), Error> {
    let total: usize = args.parse("N")?;
    let pid_file = args.path("PIDFILE")?;
    let secs = args.secs("SECS")?;
    args.finish()?;
    if !(1..=MAX_PROCESSES).contains(&total) {
        return Err(Error::Usage(format!(
            "N must be between 1 and {MAX_PROCESSES}, not {total}"
        )));
    }

    // Truncated, then opened once for appending before any fork and
    // inherited: every process appends through the same O_APPEND open file
    // description. (std refuses to truncate and append in one open.)
    File::create(&pid_file).map_err(|e| Error::io_path("create", &pid_file, e))?;
    let mut file = OpenOptions::new()
        .append(true)
        .open(&pid_file)
        .map_err(|e| Error::io_path("open for appending", &pid_file, e))?;

    let is_root = fork_subtree(total)?;
    append_line(&mut file, &pid_file)?;
    drop(file);
    if is_root {
        common::poll_until(LINES_WAIT, "see all lines in", &pid_file, || {
            count_lines(&pid_file).map(|lines| lines >= total)
        })?;
        common::announce_ready();
    }
    common::sleep_for(secs);
    Ok(())
}

/// Forks this process's share of the tree. Returns `true` in the root and
/// `false` in every process it created, each of which has forked its own
/// subtree by then.
fn fork_subtree(total: usize) -> Result<bool, Error> {
    let mut size = total;
    let mut is_root = true;
    'node: loop {
        let rest = size - 1;
        let children = fan_out(rest);
        for index in 0..children {
            let share = rest / children + usize::from(index < rest % children);
            match sys::fork() {
                Ok(Forked::Parent(_)) => {}
                Ok(Forked::Child) => {
                    size = share;
                    is_root = false;
                    continue 'node;
                }
                Err(error) if !is_root => {
                    // The root would never see N lines; it reports the
                    // timeout, this process says why.
                    eprintln!("hw-fixture: failed to {error}");
                    sys::exit_immediately(1)
                }
                Err(error) => return Err(error),
            }
        }
        return Ok(is_root);
    }
}

/// How many children a node forks when `rest` processes remain below it.
fn fan_out(rest: usize) -> usize {
    if rest == 0 {
        0
    } else {
        (rest / 2).clamp(1, MAX_FAN_OUT)
    }
}

/// Appends this process's line with one `write(2)`, so that concurrent
/// appends do not interleave.
fn append_line(file: &mut File, path: &Path) -> Result<(), Error> {
    let line = format!("{}\n", common::identity()?);
    let written = file
        .write(line.as_bytes())
        .map_err(|e| Error::io_path("append to", path, e))?;
    if written != line.len() {
        return Err(Error::io_path(
            "append to",
            path,
            io::Error::new(io::ErrorKind::WriteZero, "short write"),
        ));
    }
    Ok(())
}

fn count_lines(path: &Path) -> Result<usize, Error> {
    let text = fs::read(path).map_err(|e| Error::io_path("read", path, e))?;
    Ok(text.iter().filter(|&&byte| byte == b'\n').count())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds the tree shape on paper: the number of processes and the depth
    /// (1 for a lone root).
    fn shape(size: usize) -> (usize, usize) {
        let rest = size - 1;
        let children = fan_out(rest);
        let mut count = 1;
        let mut depth = 1;
        for index in 0..children {
            let share = rest / children + usize::from(index < rest % children);
            let (sub_count, sub_depth) = shape(share);
            count += sub_count;
            depth = depth.max(sub_depth + 1);
        }
        (count, depth)
    }

    #[test]
    fn every_size_makes_exactly_that_many_processes() {
        for size in 1..=MAX_PROCESSES {
            assert_eq!(shape(size).0, size, "size {size}");
        }
    }

    #[test]
    fn small_trees_have_grandchildren() {
        assert_eq!(shape(3).1, 3);
        assert_eq!(shape(5).1, 3);
        assert!(shape(20).1 >= 3);
    }

    #[test]
    fn fan_out_is_at_most_four() {
        assert!((0..1000).all(|rest| fan_out(rest) <= MAX_FAN_OUT));
    }
}
