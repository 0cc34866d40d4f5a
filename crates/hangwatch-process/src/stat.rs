//! Parsing `/proc/PID/stat` and `/proc/PID/cmdline`.
//!
//! Written by hand rather than with the `procfs` crate because the tree scan is on the stop path
//! and reads every process on the machine: it needs five fields, not fifty, and no allocation
//! beyond the command name. The parsers take text, so unit tests feed captured `/proc` lines.

use std::io;
use std::path::Path;

use hangwatch_protocol::report::ProcessInfo;

/// The fields of `/proc/PID/stat` that lifecycle code needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Process ID (field 1).
    pub pid: i32,
    /// The command name, without the parentheses (field 2; at most 15 bytes, may contain spaces
    /// and parentheses of its own).
    pub comm: String,
    /// State letter (field 3): `R`, `S`, `D`, `Z`, `T`, …
    pub state: char,
    /// Parent PID (field 4).
    pub ppid: i32,
    /// Process group ID (field 5).
    pub pgrp: i32,
    /// Session ID (field 6).
    pub session: i32,
    /// CPU time used, user and system, in clock ticks (fields 14 and 15).
    pub cpu_ticks: u64,
    /// Start time in clock ticks after boot (field 22): with the PID, the process's identity.
    pub start_time: u64,
    /// Resident set size in pages (field 24), as of the read.
    pub rss_pages: u64,
}

impl Stat {
    /// The process as reports name it, with its command line read now.
    #[must_use]
    pub fn info(&self) -> ProcessInfo {
        ProcessInfo {
            pid: self.pid,
            start_time: self.start_time,
            ppid: self.ppid,
            pgid: self.pgrp,
            command: read_command(self.pid, &self.comm),
        }
    }

    /// Whether the process has exited and only waits to be reaped.
    #[must_use]
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Parses the text of `/proc/PID/stat`.
///
/// Returns `None` when the line is malformed. The command name is delimited by the first `(`
/// and the *last* `)`, since a process may put `)` in its own name.
#[must_use]
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_owned();
    // Fields after the name, starting with field 3 (state) at index 0.
    let mut rest = text[close + 1..].split_ascii_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    let session = rest.next()?.parse().ok()?;
    // Fields 14 and 15: utime and stime; 4 consumed so far (fields 3 to 6).
    let utime: u64 = rest.nth(14 - 3 - 4)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    // Field 22; fields 3 to 15 consumed.
    let start_time = rest.nth(22 - 16)?.parse().ok()?;
    // Field 23 is vsize, 24 rss; a kernel thread reports 0.
    let rss_pages = rest.nth(1).and_then(|f| f.parse().ok()).unwrap_or(0);
    Some(Stat {
        pid,
        comm,
        state,
        ppid,
        pgrp,
        session,
        // Saturating: the fields are the kernel's, but a corrupt line must not panic.
        cpu_ticks: utime.saturating_add(stime),
        start_time,
        rss_pages,
    })
}

/// Reads and parses `/proc/PID/stat`.
///
/// `Ok(None)` means the process does not exist (any more): a process can exit between any two
/// reads, and that is not an error.
pub fn read_stat(pid: i32) -> io::Result<Option<Stat>> {
    read_stat_file(Path::new(&format!("/proc/{pid}/stat")))
}

/// Reads and parses a `stat` file of `/proc` (a process's, or a thread's under `task/`).
/// `Ok(None)` when it is gone.
pub fn read_stat_file(path: &Path) -> io::Result<Option<Stat>> {
    use std::io::Read;
    // open + read + close into a stack buffer: `fs::read_to_string` would add a `statx` per
    // file for its size hint, and the scan reads every process on the machine.
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if is_gone(&err) => return Ok(None),
        Err(err) => return Err(err),
    };
    // A stat line is about 300 bytes: 52 numbers and a name of at most 64 bytes.
    let mut buf = [0u8; 1024];
    let mut len = 0;
    loop {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len == buf.len() {
                    break;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if is_gone(&err) => return Ok(None),
            Err(err) => return Err(err),
        }
    }
    Ok(std::str::from_utf8(&buf[..len]).ok().and_then(parse_stat))
}

/// Reads `/proc/PID/cmdline` as a space-joined string; `[comm]` for kernel threads and zombies,
/// whose command line is empty, and `None` when the process is gone.
#[must_use]
pub fn read_command(pid: i32, comm: &str) -> String {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(bytes) => format_cmdline(&bytes).unwrap_or_else(|| format!("[{comm}]")),
        Err(_) => format!("[{comm}]"),
    }
}

/// Turns the NUL-separated bytes of `/proc/PID/cmdline` into one readable line.
#[must_use]
pub fn format_cmdline(bytes: &[u8]) -> Option<String> {
    let args: Vec<_> = bytes
        .split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .map(String::from_utf8_lossy)
        .collect();
    if args.is_empty() {
        None
    } else {
        Some(args.join(" "))
    }
}

/// Whether an error reading `/proc/PID/…` only says that the process is gone.
pub(crate) fn is_gone(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a real `sleep 100` on Linux 6.x.
    const SLEEP: &str = "4242 (sleep) S 4240 4242 4100 34816 4242 4194304 94 0 0 0 0 0 0 0 20 0 1 0 1234567 5652480 240 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn parses_the_fields_lifecycle_needs() {
        let stat = parse_stat(SLEEP).expect("parse");
        assert_eq!(stat.pid, 4242);
        assert_eq!(stat.comm, "sleep");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 4240);
        assert_eq!(stat.pgrp, 4242);
        assert_eq!(stat.session, 4100);
        assert_eq!(stat.start_time, 1_234_567);
        assert_eq!(stat.rss_pages, 240);
        assert!(!stat.is_zombie());
    }

    #[test]
    fn cpu_time_is_user_plus_system() {
        let text = SLEEP.replace("94 0 0 0 0 0", "94 0 0 0 7 5");
        let stat = parse_stat(&text).expect("parse");
        assert_eq!(stat.cpu_ticks, 12);
        assert_eq!(stat.start_time, 1_234_567);
        assert_eq!(stat.rss_pages, 240);
    }

    #[test]
    fn command_name_may_hold_parentheses_and_spaces() {
        let text = SLEEP.replace("(sleep)", "(a) b (c))");
        let stat = parse_stat(&text).expect("parse");
        assert_eq!(stat.comm, "a) b (c)");
        assert_eq!(stat.start_time, 1_234_567);
    }

    #[test]
    fn truncated_lines_are_rejected() {
        assert_eq!(parse_stat("12 (x) S 1 12"), None);
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat(") 12 (x"), None);
    }

    #[test]
    fn zombie_state_is_recognised() {
        let stat = parse_stat(&SLEEP.replace(") S ", ") Z ")).expect("parse");
        assert!(stat.is_zombie());
    }

    #[test]
    fn own_stat_is_readable() {
        let stat = read_stat(std::process::id() as i32)
            .expect("read")
            .expect("present");
        assert_eq!(stat.pid, std::process::id() as i32);
        assert!(stat.start_time > 0);
    }

    #[test]
    fn cmdline_is_joined_with_spaces() {
        assert_eq!(
            format_cmdline(b"python3\0-c\0print(1)\0").as_deref(),
            Some("python3 -c print(1)")
        );
        assert_eq!(format_cmdline(b""), None);
    }
}
