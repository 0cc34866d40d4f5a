//! One reading of every thread of a process from `/proc`: state, wait channel, CPU time,
//! context switches and the system call it is in. Two readings a sampling window apart tell a
//! thread that spins from one that waits.

use std::io;
use std::path::Path;

use hangwatch_process::stat::read_stat_file;

use crate::syscall::{SyscallLine, parse_line};

/// A thread as `/proc` shows it at one moment.
#[derive(Debug, Clone)]
pub struct ThreadReading {
    /// Thread ID.
    pub tid: i32,
    /// Thread name (`comm`).
    pub name: String,
    /// State letter.
    pub state: char,
    /// Kernel wait channel, when the thread sleeps and the kernel shows it.
    pub wchan: Option<String>,
    /// Time on a CPU so far, in nanoseconds (`schedstat`), when readable.
    pub cpu_ns: Option<u64>,
    /// Time runnable but waiting for a CPU so far, in nanoseconds (`schedstat`).
    pub run_delay_ns: Option<u64>,
    /// Voluntary plus involuntary context switches so far.
    pub switches: Option<u64>,
    /// The system call, or why it could not be read.
    pub syscall: Result<SyscallLine, ReadError>,
}

/// Why a per-thread file could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The kernel refused (ptrace access rules).
    NotPermitted,
    /// The thread is gone, or the file is unreadable for another reason.
    Unavailable,
}

/// Reads every thread of `pid`; empty when the process is gone.
#[must_use]
pub fn read_threads(pid: i32) -> Vec<ThreadReading> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<ThreadReading> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|tid| read_thread(pid, tid))
        .collect();
    out.sort_by_key(|t| t.tid);
    out
}

/// Reads one thread; `None` when it is gone.
#[must_use]
pub fn read_thread(pid: i32, tid: i32) -> Option<ThreadReading> {
    let dir = format!("/proc/{pid}/task/{tid}");
    let stat = read_stat_file(Path::new(&format!("{dir}/stat"))).ok()??;
    // Read the call before the wait channel: both race with the thread, and the call is the
    // fact the report builds on.
    let syscall = match std::fs::read_to_string(format!("{dir}/syscall")) {
        Ok(text) => parse_line(&text).ok_or(ReadError::Unavailable),
        Err(err) if is_denied(&err) => Err(ReadError::NotPermitted),
        Err(_) => Err(ReadError::Unavailable),
    };
    let wchan = std::fs::read_to_string(format!("{dir}/wchan"))
        .ok()
        .and_then(|text| crate::threads::parse_wchan(&text));
    let schedstat = std::fs::read_to_string(format!("{dir}/schedstat"))
        .ok()
        .and_then(|text| crate::pressure::parse_schedstat(&text));
    let switches = std::fs::read_to_string(format!("{dir}/status"))
        .ok()
        .and_then(|text| parse_switches(&text));
    Some(ThreadReading {
        tid,
        name: stat.comm,
        state: stat.state,
        wchan: if stat.state == 'R' { None } else { wchan },
        cpu_ns: schedstat.map(|s| s.cpu_ns),
        run_delay_ns: schedstat.map(|s| s.run_delay_ns),
        switches,
        syscall,
    })
}

fn is_denied(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EACCES | libc::EPERM))
}

/// Voluntary plus involuntary context switches from a `status` file; `None` when a field is
/// missing or the sum does not fit (only a corrupt file says that much).
#[must_use]
pub fn parse_switches(status: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim_start_matches(':').trim().parse().ok())
    };
    field("voluntary_ctxt_switches")?.checked_add(field("nonvoluntary_ctxt_switches")?)
}

/// Resident and peak resident memory of a process in KiB, from `status`.
#[must_use]
pub fn read_memory_kib(pid: i32) -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (None, None);
    };
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))?
            .trim_start_matches(':')
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    (field("VmRSS"), field("VmHWM"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_both_kinds_of_context_switch() {
        let status = "Name:\tsleep\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(parse_switches(status), Some(15));
        assert_eq!(parse_switches("Name:\tx\n"), None);
    }

    #[test]
    fn switches_that_overflow_are_none_not_a_panic() {
        // Found by the property test: the sum of two huge counters overflowed a `u64`.
        let status =
            "voluntary_ctxt_switches:\t18446744073709551615\nnonvoluntary_ctxt_switches:\t1\n";
        assert_eq!(parse_switches(status), None);
    }

    #[test]
    fn reads_its_own_threads_with_their_calls() {
        let threads = read_threads(std::process::id() as i32);
        assert!(!threads.is_empty());
        // This thread is running while it reads itself (the kernel shows it in its `read`).
        let me = threads
            .iter()
            .find(|t| t.tid == nix::unistd::gettid().as_raw())
            .expect("own thread listed");
        assert_eq!(me.state, 'R');
        assert!(me.syscall.is_ok(), "{:?}", me.syscall);
        // `schedstat` of a running thread lags until its next tick; only its presence is sure.
        assert!(me.cpu_ns.is_some());
        let (rss, peak) = read_memory_kib(std::process::id() as i32);
        assert!(rss.is_some_and(|kib| kib > 0) && peak >= rss);
    }
}
