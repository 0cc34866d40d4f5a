//! Whether the kernel's OOM killer killed a process.
//!
//! A program that dies of a `KILL` nobody in hangwatch sent was killed by someone: a user's
//! `kill -9`, an orchestrator, or, most often for memory-hungry Python, the kernel's OOM
//! killer. Only the kernel log can tell these apart. When the OOM killer acts, it logs (in
//! `mm/oom_kill.c`, `dump_oom_victim` and `__oom_kill_process`):
//!
//! ```text
//! oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/x,task_memcg=/x,task=python3,pid=1234,uid=0
//! Memory cgroup out of memory: Killed process 1234 (python3) total-vm:80000kB, anon-rss:65000kB, file-rss:4000kB, shmem-rss:0kB, UID:0 pgtables:200kB oom_score_adj:0
//! ```
//!
//! # Theory of operation
//!
//! A [`KernelLog`] holds `/dev/kmsg` open (`O_NONBLOCK`), from the end of the log (records
//! written from then on) or from its beginning. Each [`KernelLog::oom_kill_of`] reads the records
//! written since the last one, one `read` per record until `EAGAIN`, bounded in time and bytes,
//! keeps the few OOM records among them, and looks for the exact PID with a timestamp after the
//! process started (PIDs are reused). An `EPIPE` on a read means the kernel overwrote records
//! before they were read: reading goes on from the oldest record left, and an absence of an OOM
//! record is then no longer proof that there was none. See the kernel's
//! `Documentation/ABI/testing/dev-kmsg`.
//!
//! When the kernel log cannot be read (a container, `kernel.dmesg_restrict` for a user without
//! `CAP_SYSLOG`) the answer is [`OomFinding::Undecided`]; nothing weaker is taken for a verdict.
//! [`CgroupOomKills`] reads the `oom_kill` counter of a cgroup, which a caller may offer as a
//! hint next to that answer.
//!
//! # Caveats
//!
//! - The record's timestamp is the kernel's `local_clock`, the process's start time is
//!   `CLOCK_BOOTTIME`: the time spent suspended is subtracted, and a slack of a second plus
//!   100 ppm of the uptime (at most 10 s) absorbs the drift between the two clocks. A record of the same PID
//!   from before that bound is not taken for this process's kill, nor for proof that it had none.
//! - The OOM killer signals its victim before it logs the kill. When the victim is the process
//!   that ran out of memory (one program in its cgroup, the usual case), the victim cannot
//!   finish exiting before the record is written; when another process triggered the kill, the
//!   record may in principle come a moment after the victim was reaped.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hangwatch_protocol::report::{CgroupOomHint, OomCheck, OomConstraint, OomFinding, OomKill};

use crate::pid::ProcessId;

/// Where the kernel log is read.
pub const KMSG: &str = "/dev/kmsg";

/// The longest one look reads the kernel log. The ring buffer is a few MB at most; reading
/// all of it takes a few milliseconds, so this bound is only reached on a machine in trouble.
pub const READ_TIME_LIMIT: Duration = Duration::from_millis(100);

/// The most bytes one look reads (records are at most 8 KiB each).
pub const READ_BYTE_LIMIT: u64 = 16 << 20;

/// How many OOM records are kept between looks (the newest).
const KEPT: usize = 64;

/// The largest record `/dev/kmsg` returns (`CONSOLE_EXT_LOG_MAX`): a smaller buffer makes
/// `read` fail with `EINVAL`.
const RECORD_MAX: usize = 8192;

/// Why the kernel log could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelLogError {
    /// `/dev/kmsg` could not be opened.
    #[error("open {KMSG}: {source}")]
    Open {
        /// The cause: `EPERM` under `dmesg_restrict`, `ENOENT` in many containers.
        #[source]
        source: io::Error,
    },
    /// Reading `/dev/kmsg` failed.
    #[error("read {KMSG}: {source}")]
    Read {
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// One record of `/dev/kmsg`: `PRIORITY,SEQ,TIMESTAMP,FLAGS[,…];MESSAGE`, then dictionary
/// lines (`SUBSYSTEM=…`) each starting with a space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The sequence number.
    pub seq: u64,
    /// Microseconds since boot (the kernel's `local_clock`).
    pub at_usec: u64,
    /// The message, without the dictionary lines.
    pub message: &'a str,
}

/// Parses one record as one `read` of `/dev/kmsg` returns it.
#[must_use]
pub fn parse_record(text: &str) -> Option<Record<'_>> {
    let (prefix, rest) = text.split_once(';')?;
    let mut fields = prefix.split(',');
    let _priority: u32 = fields.next()?.parse().ok()?;
    let seq = fields.next()?.parse().ok()?;
    let at_usec = fields.next()?.parse().ok()?;
    // The message ends at the first newline; what follows are continuation (dictionary)
    // lines, each beginning with a space.
    let message = rest.split('\n').next().unwrap_or_default();
    Some(Record {
        seq,
        at_usec,
        message,
    })
}

/// What an OOM record of the kernel says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OomLine {
    /// `oom-kill:constraint=…,oom_memcg=…,task_memcg=…,task=…,pid=…,uid=…` (kernel 4.19+),
    /// logged just before the kill.
    Context {
        /// The victim's PID.
        pid: i32,
        /// Why memory ran out.
        constraint: OomConstraint,
        /// The memory cgroup whose limit was reached.
        oom_memcg: Option<String>,
        /// The victim's memory cgroup.
        task_memcg: Option<String>,
    },
    /// `…: Killed process PID (COMM) total-vm:NkB, anon-rss:NkB, …`: the kill itself.
    Killed {
        /// The victim's PID.
        pid: i32,
        /// Its command name.
        task: String,
        /// `total-vm`, in KiB.
        total_vm_kib: Option<u64>,
        /// `anon-rss`, in KiB.
        anon_rss_kib: Option<u64>,
        /// Whether the prefix was `Memory cgroup out of memory`.
        memcg: bool,
    },
}

/// Parses the message of a record if it is one of the OOM killer's.
#[must_use]
pub fn parse_oom_line(message: &str) -> Option<OomLine> {
    if let Some(rest) = message.strip_prefix("oom-kill:") {
        let mut constraint = None;
        let mut pid = None;
        let mut oom_memcg = None;
        let mut task_memcg = None;
        for pair in rest.split(',') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            match key {
                "constraint" => constraint = Some(parse_constraint(value)?),
                "pid" => pid = value.parse().ok(),
                "oom_memcg" => oom_memcg = Some(value.to_owned()),
                "task_memcg" => task_memcg = Some(value.to_owned()),
                _ => {}
            }
        }
        return Some(OomLine::Context {
            pid: pid?,
            constraint: constraint?,
            oom_memcg,
            task_memcg,
        });
    }
    // "Out of memory: Killed process …", "Memory cgroup out of memory: Killed process …"; the
    // oom reaper's later "oom_reaper: reaped process …" is not a kill.
    let at = message.find("Killed process ")?;
    let memcg = message[..at].starts_with("Memory cgroup out of memory");
    let rest = &message[at + "Killed process ".len()..];
    let (pid, rest) = rest.split_once(" (")?;
    let pid = pid.parse().ok()?;
    // The command name may hold ") "; the fields follow the last ") " before "total-vm:".
    let fields_at = rest.find("total-vm:").unwrap_or(rest.len());
    let close = rest[..fields_at].rfind(')')?;
    let task = rest[..close].to_owned();
    let fields = &rest[close + 1..];
    Some(OomLine::Killed {
        pid,
        task,
        total_vm_kib: kib_field(fields, "total-vm:"),
        anon_rss_kib: kib_field(fields, "anon-rss:"),
        memcg,
    })
}

fn parse_constraint(value: &str) -> Option<OomConstraint> {
    Some(match value {
        "CONSTRAINT_NONE" => OomConstraint::Machine,
        "CONSTRAINT_MEMCG" => OomConstraint::MemoryCgroup,
        "CONSTRAINT_CPUSET" => OomConstraint::Cpuset,
        "CONSTRAINT_MEMORY_POLICY" => OomConstraint::MemoryPolicy,
        _ => return None,
    })
}

/// `anon-rss:65000kB` → 65000.
fn kib_field(fields: &str, key: &str) -> Option<u64> {
    let at = fields.find(key)? + key.len();
    let digits: &str = fields[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or_default();
    digits.parse().ok()
}

/// An OOM record kept between looks, with when it was logged.
#[derive(Debug, Clone)]
struct Kept {
    seq: u64,
    at_usec: u64,
    line: OomLine,
}

/// How the last read of the kernel log ended.
#[derive(Debug)]
enum ReadEnd {
    CaughtUp,
    /// Stopped at the time or byte bound with records left unread.
    Bounded,
    Failed(KernelLogError),
}

/// `/dev/kmsg`, held open, with the OOM records read from it so far. See the module's doc.
#[derive(Debug)]
pub struct KernelLog {
    file: Result<File, String>,
    kept: VecDeque<Kept>,
    /// The timestamp of the first record read after the kernel overwrote unread ones.
    lost_before_usec: Option<u64>,
    buf: Vec<u8>,
}

impl KernelLog {
    /// Opens the kernel log after its last record: only records written from now on are read.
    /// Open it before the program starts.
    #[must_use]
    pub fn from_now() -> KernelLog {
        Self::open(true)
    }

    /// Opens the kernel log at its oldest record.
    #[must_use]
    pub fn from_oldest() -> KernelLog {
        Self::open(false)
    }

    fn open(at_end: bool) -> KernelLog {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(KMSG)
            .and_then(|mut file| {
                if at_end {
                    file.seek(SeekFrom::End(0))?;
                }
                Ok(file)
            })
            .map_err(|source| KernelLogError::Open { source }.to_string());
        KernelLog {
            file,
            kept: VecDeque::new(),
            lost_before_usec: None,
            buf: Vec::new(),
        }
    }

    /// Whether the kernel log could be opened.
    #[must_use]
    pub fn readable(&self) -> bool {
        self.file.is_ok()
    }

    /// Whether the kernel's OOM killer killed `id` (which died of a `KILL`): reads the records
    /// written since the last look, within [`READ_TIME_LIMIT`] and [`READ_BYTE_LIMIT`].
    pub fn oom_kill_of(&mut self, id: ProcessId) -> OomCheck {
        let began = Instant::now();
        let (end, bytes) = self.read_new();
        let finding = self.find(id, &end);
        OomCheck {
            finding,
            took_ms: began.elapsed().as_secs_f64() * 1000.0,
            kmsg_bytes: bytes,
        }
    }

    fn find(&mut self, id: ProcessId, end: &ReadEnd) -> OomFinding {
        let undecided = |why: String| OomFinding::Undecided {
            why,
            cgroup_hint: None,
        };
        let file_error = match &self.file {
            Ok(_) => None,
            Err(why) => Some(why.clone()),
        };
        if let Some(why) = file_error {
            return undecided(why);
        }
        let started = start_usec(id.start_time);
        let slack = slack_usec();
        let after_start = |at: u64| at.saturating_add(slack) >= started;
        let kill = self.kept.iter().rposition(|k| {
            matches!(&k.line, OomLine::Killed { pid, .. } if *pid == id.pid)
                && after_start(k.at_usec)
        });
        if let Some(at) = kill {
            let Some(Kept {
                seq,
                at_usec,
                line:
                    OomLine::Killed {
                        task,
                        total_vm_kib,
                        anon_rss_kib,
                        memcg,
                        ..
                    },
            }) = self.kept.remove(at)
            else {
                unreachable!("matched above");
            };
            // The `oom-kill:` line just before it, for the same PID.
            let context = self.kept.iter().rev().find_map(|k| match &k.line {
                OomLine::Context {
                    pid,
                    constraint,
                    oom_memcg,
                    task_memcg,
                } if *pid == id.pid && k.seq < seq && after_start(k.at_usec) => {
                    Some((*constraint, oom_memcg.clone(), task_memcg.clone()))
                }
                _ => None,
            });
            self.kept
                .retain(|k| !matches!(&k.line, OomLine::Context { pid, .. } if *pid == id.pid));
            let (constraint, cgroup, task_cgroup) = match context {
                Some((constraint, oom_memcg, task_memcg)) => (constraint, oom_memcg, task_memcg),
                None if memcg => (OomConstraint::MemoryCgroup, None, None),
                None => (OomConstraint::Machine, None, None),
            };
            return OomFinding::Killed(OomKill {
                pid: id.pid,
                task,
                cgroup: cgroup.filter(|_| constraint == OomConstraint::MemoryCgroup),
                constraint,
                task_cgroup,
                anon_rss_kib,
                total_vm_kib,
                at_usec,
            });
        }
        match end {
            ReadEnd::Failed(err) => return undecided(err.to_string()),
            ReadEnd::Bounded => {
                return undecided(format!(
                    "{KMSG} was not read to its end within {} ms",
                    READ_TIME_LIMIT.as_millis()
                ));
            }
            ReadEnd::CaughtUp => {}
        }
        if self
            .lost_before_usec
            .is_some_and(|lost| lost.saturating_add(slack) >= started)
        {
            return undecided(format!(
                "the kernel overwrote records of {KMSG} written during its run before they \
                 were read"
            ));
        }
        if self
            .kept
            .iter()
            .any(|k| matches!(&k.line, OomLine::Killed { pid, .. } if *pid == id.pid))
        {
            return undecided(format!(
                "{KMSG} has an OOM kill of PID {} from before the process started (a reused \
                 PID, or clocks apart)",
                id.pid
            ));
        }
        OomFinding::NotOom
    }

    /// Reads the records written since the last read; keeps the OOM ones.
    fn read_new(&mut self) -> (ReadEnd, u64) {
        let Ok(file) = &mut self.file else {
            return (ReadEnd::CaughtUp, 0);
        };
        if self.buf.len() < RECORD_MAX {
            self.buf.resize(RECORD_MAX, 0);
        }
        let began = Instant::now();
        let mut bytes = 0u64;
        let mut lost = false;
        let mut records = 0u32;
        loop {
            // Checked every 64 records: a clock read per record would cost as much as the read.
            records = records.wrapping_add(1);
            if bytes >= READ_BYTE_LIMIT || (records % 64 == 0 && began.elapsed() >= READ_TIME_LIMIT)
            {
                return (ReadEnd::Bounded, bytes);
            }
            match file.read(&mut self.buf) {
                Ok(0) => return (ReadEnd::CaughtUp, bytes),
                Ok(n) => {
                    bytes += n as u64;
                    let Some(record) = std::str::from_utf8(&self.buf[..n])
                        .ok()
                        .and_then(parse_record)
                    else {
                        continue;
                    };
                    if lost {
                        lost = false;
                        self.lost_before_usec = Some(record.at_usec);
                    }
                    if let Some(line) = parse_oom_line(record.message) {
                        if self.kept.len() == KEPT {
                            self.kept.pop_front();
                        }
                        self.kept.push_back(Kept {
                            seq: record.seq,
                            at_usec: record.at_usec,
                            line,
                        });
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    return (ReadEnd::CaughtUp, bytes);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // Records were overwritten before they were read; the next read returns the
                // oldest one left.
                Err(err) if err.raw_os_error() == Some(libc::EPIPE) => lost = true,
                Err(source) => return (ReadEnd::Failed(KernelLogError::Read { source }), bytes),
            }
        }
    }
}

/// A process's start time (clock ticks of `CLOCK_BOOTTIME`) on the kernel log's clock, in
/// microseconds: the time spent suspended, which the log's clock does not count, subtracted.
fn start_usec(start_ticks: u64) -> u64 {
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let boot_usec = start_ticks.saturating_mul(1_000_000) / ticks;
    boot_usec.saturating_sub(suspended_usec())
}

fn clock_usec(clock: nix::time::ClockId) -> Option<u64> {
    let now = nix::time::clock_gettime(clock).ok()?;
    let usec = i128::from(now.tv_sec()) * 1_000_000 + i128::from(now.tv_nsec()) / 1000;
    u64::try_from(usec).ok()
}

/// `CLOCK_BOOTTIME - CLOCK_MONOTONIC`: how long the machine has been suspended since boot.
fn suspended_usec() -> u64 {
    match (
        clock_usec(nix::time::ClockId::CLOCK_BOOTTIME),
        clock_usec(nix::time::ClockId::CLOCK_MONOTONIC),
    ) {
        (Some(boot), Some(mono)) => boot.saturating_sub(mono),
        _ => 0,
    }
}

/// How far a record may seem to precede the start of a process it belongs to: a second, plus
/// 100 ppm of the uptime for the drift between the log's clock and the boot clock, at most 10 s.
/// A wider slack would let a reused PID's older OOM kill pass for this process's; a narrower
/// one makes a short-lived victim on a long-running machine undecided, never misjudged.
fn slack_usec() -> u64 {
    let uptime = clock_usec(nix::time::ClockId::CLOCK_MONOTONIC).unwrap_or(0);
    (1_000_000 + uptime / 10_000).min(10_000_000)
}

/// The `oom_kill` counter of a process's memory cgroup: `memory.events` (cgroup v2, counting
/// the cgroup and those below it) or `memory.oom_control` (cgroup v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupOomKills {
    /// The file the count is read from.
    pub file: PathBuf,
    /// The count when it was read.
    pub count: u64,
}

impl CgroupOomKills {
    /// The counter of the memory cgroup `pid` is in now (`None` when there is none to read:
    /// no memory controller, a cgroup file system not mounted, the process gone).
    #[must_use]
    pub fn of(pid: i32) -> Option<CgroupOomKills> {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let file = counter_file(&cgroups, &mounts, |path| path.exists())?;
        let count = read_count(&file)?;
        Some(CgroupOomKills { file, count })
    }

    /// The counter of hangwatch's own memory cgroup, where the programs it starts begin.
    #[must_use]
    pub fn of_self() -> Option<CgroupOomKills> {
        Self::of(i32::try_from(std::process::id()).ok()?)
    }

    /// Reads the count again, from the same file.
    pub fn refresh(&mut self) {
        if let Some(count) = read_count(&self.file) {
            self.count = count;
        }
    }

    /// A hint when the counter rose since this reading.
    #[must_use]
    pub fn rose(&self) -> Option<CgroupOomHint> {
        let after = read_count(&self.file)?;
        (after > self.count).then(|| CgroupOomHint {
            file: self.file.display().to_string(),
            before: self.count,
            after,
        })
    }
}

fn read_count(file: &Path) -> Option<u64> {
    parse_oom_kill_count(&std::fs::read_to_string(file).ok()?)
}

/// The `oom_kill N` line of `memory.events` or `memory.oom_control`.
#[must_use]
pub fn parse_oom_kill_count(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// The file holding the `oom_kill` count of the memory cgroup named in `cgroups` (the text of
/// `/proc/PID/cgroup`), found through `mounts` (`/proc/self/mountinfo`): cgroup v2 when its
/// hierarchy has the memory controller there, else v1's memory hierarchy.
fn counter_file(cgroups: &str, mounts: &str, exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let mut v2 = None;
    let mut v1 = None;
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path);
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path);
        }
    }
    let mut found = None;
    for line in mounts.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(point), Some(fstype)) = (left.get(3), left.get(4), right.first())
        else {
            continue;
        };
        let (path, name) = match *fstype {
            "cgroup2" => (v2, "memory.events"),
            "cgroup"
                if right
                    .get(2)
                    .is_some_and(|opts| opts.split(',').any(|o| o == "memory")) =>
            {
                (v1, "memory.oom_control")
            }
            _ => continue,
        };
        let Some(path) = path else {
            continue;
        };
        let Some(relative) = path.strip_prefix(root.trim_end_matches('/')) else {
            continue;
        };
        let file = Path::new(point)
            .join(relative.trim_start_matches('/'))
            .join(name);
        if exists(&file) {
            // v2 first: on a hybrid machine whose v2 hierarchy has no memory controller, no
            // `memory.events` exists there and v1's is taken.
            if *fstype == "cgroup2" {
                return Some(file);
            }
            found = Some(file);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from /dev/kmsg on Linux 6.18: a Python program over a 64 MiB cgroup v1 limit.
    const CONTEXT: &str = "6,416,774880764,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/process_api/e5a2/hw-oom-probe,task_memcg=/process_api/e5a2/hw-oom-probe,task=python3,pid=22136,uid=0\n";
    const KILLED: &str = "3,417,774880786,-;Memory cgroup out of memory: Killed process 22136 (python3) total-vm:82360kB, anon-rss:72192kB, file-rss:6604kB, shmem-rss:0kB, UID:0 pgtables:208kB oom_score_adj:0\n";
    const GLOBAL: &str = "3,2001,99000000,-;Out of memory: Killed process 777 (java) total-vm:9000000kB, anon-rss:7340032kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:15000kB oom_score_adj:0\n";
    const REAPED: &str = "6,1023,81263100,-;oom_reaper: reaped process 22136 (python3), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB\n";
    // A record with dictionary (continuation) lines, each starting with a space.
    const WITH_DICT: &str = "6,339,5140900,-,caller=T1;usb 1-1: new high-speed USB device number 2 using ehci-pci\n SUBSYSTEM=usb\n DEVICE=c189:1\n";

    #[test]
    fn a_record_is_split_into_sequence_time_and_message() {
        let record = parse_record(KILLED).expect("record");
        assert_eq!(record.seq, 417);
        assert_eq!(record.at_usec, 774_880_786);
        assert!(
            record
                .message
                .starts_with("Memory cgroup out of memory: Killed process 22136")
        );
        assert!(!record.message.ends_with('\n'));
    }

    #[test]
    fn continuation_lines_are_not_part_of_the_message() {
        let record = parse_record(WITH_DICT).expect("record");
        assert_eq!(record.seq, 339);
        assert_eq!(
            record.message,
            "usb 1-1: new high-speed USB device number 2 using ehci-pci"
        );
        assert_eq!(parse_oom_line(record.message), None);
    }

    #[test]
    fn malformed_records_are_rejected() {
        assert_eq!(parse_record("no prefix"), None);
        assert_eq!(parse_record("6,x,1,-;m"), None);
        assert_eq!(parse_record(""), None);
    }

    #[test]
    fn the_oom_kill_context_line_names_constraint_and_cgroups() {
        let record = parse_record(CONTEXT).expect("record");
        assert_eq!(
            parse_oom_line(record.message),
            Some(OomLine::Context {
                pid: 22136,
                constraint: OomConstraint::MemoryCgroup,
                oom_memcg: Some("/process_api/e5a2/hw-oom-probe".into()),
                task_memcg: Some("/process_api/e5a2/hw-oom-probe".into()),
            })
        );
    }

    #[test]
    fn the_kill_line_names_pid_task_and_memory() {
        let record = parse_record(KILLED).expect("record");
        assert_eq!(
            parse_oom_line(record.message),
            Some(OomLine::Killed {
                pid: 22136,
                task: "python3".into(),
                total_vm_kib: Some(82_360),
                anon_rss_kib: Some(72_192),
                memcg: true,
            })
        );
        let record = parse_record(GLOBAL).expect("record");
        assert!(matches!(
            parse_oom_line(record.message),
            Some(OomLine::Killed {
                pid: 777,
                memcg: false,
                anon_rss_kib: Some(7_340_032),
                ..
            })
        ));
    }

    #[test]
    fn a_command_name_with_parentheses_is_kept_whole() {
        let line =
            "Out of memory: Killed process 9 (a) (b) total-vm:10kB, anon-rss:5kB, file-rss:0kB";
        assert!(matches!(
            parse_oom_line(line),
            Some(OomLine::Killed { pid: 9, ref task, anon_rss_kib: Some(5), .. }) if task == "a) (b"
        ));
    }

    #[test]
    fn the_oom_reaper_and_other_lines_are_not_kills() {
        let record = parse_record(REAPED).expect("record");
        assert_eq!(parse_oom_line(record.message), None);
        assert_eq!(
            parse_oom_line("python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0"),
            None
        );
        assert_eq!(
            parse_oom_line("oom-kill:constraint=CONSTRAINT_SOMETHING_NEW,pid=1"),
            None
        );
    }

    fn kept(log: &mut KernelLog, records: &[&str]) {
        for text in records {
            let record = parse_record(text).expect("record");
            let line = parse_oom_line(record.message).expect("oom line");
            log.kept.push_back(Kept {
                seq: record.seq,
                at_usec: record.at_usec,
                line,
            });
        }
    }

    fn log_without_file() -> KernelLog {
        KernelLog {
            file: Ok(File::open("/dev/null").expect("open /dev/null")),
            kept: VecDeque::new(),
            lost_before_usec: None,
            buf: Vec::new(),
        }
    }

    #[test]
    fn a_kept_kill_of_the_pid_is_the_answer_with_its_context() {
        let mut log = log_without_file();
        kept(&mut log, &[CONTEXT, KILLED]);
        let finding = log.find(
            ProcessId {
                pid: 22136,
                start_time: 0,
            },
            &ReadEnd::CaughtUp,
        );
        let OomFinding::Killed(kill) = finding else {
            panic!("not a kill: {finding:?}");
        };
        assert_eq!(kill.constraint, OomConstraint::MemoryCgroup);
        assert_eq!(
            kill.cgroup.as_deref(),
            Some("/process_api/e5a2/hw-oom-probe")
        );
        assert_eq!(kill.anon_rss_kib, Some(72_192));
        assert_eq!(kill.task, "python3");
        assert!(
            log.kept.is_empty(),
            "a kill is answered once: {:?}",
            log.kept
        );
    }

    #[test]
    fn another_pid_or_a_kill_before_the_start_is_not_this_process() {
        let mut log = log_without_file();
        kept(&mut log, &[CONTEXT, KILLED]);
        let other = ProcessId {
            pid: 22137,
            start_time: 0,
        };
        assert_eq!(log.find(other, &ReadEnd::CaughtUp), OomFinding::NotOom);
        // Started an hour after the record (at 100 ticks a second): a reused PID.
        let reused = ProcessId {
            pid: 22136,
            start_time: (774 + 3600) * rustix::param::clock_ticks_per_second(),
        };
        assert!(matches!(
            log.find(reused, &ReadEnd::CaughtUp),
            OomFinding::Undecided { .. }
        ));
    }

    #[test]
    fn no_answer_without_the_whole_log() {
        let mut log = log_without_file();
        let id = ProcessId {
            pid: 1,
            start_time: 0,
        };
        assert!(matches!(
            log.find(id, &ReadEnd::Bounded),
            OomFinding::Undecided { .. }
        ));
        log.lost_before_usec = Some(5_000_000);
        assert!(matches!(
            log.find(id, &ReadEnd::CaughtUp),
            OomFinding::Undecided { .. }
        ));
        log.file = Err("open /dev/kmsg: Permission denied (os error 13)".into());
        assert!(matches!(
            log.find(id, &ReadEnd::CaughtUp),
            OomFinding::Undecided { why, .. } if why.contains("Permission denied")
        ));
    }

    #[test]
    fn the_oom_kill_count_is_read_from_either_file() {
        let v2 = "anon 0\nlow 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill_count(v2), Some(2));
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 7\n";
        assert_eq!(parse_oom_kill_count(v1), Some(7));
        assert_eq!(parse_oom_kill_count("oom_kill_disable 0\n"), None);
    }

    #[test]
    fn the_counter_file_is_found_through_the_mounts() {
        let cgroups = "12:memory:/jobs/a\n5:cpu,cpuacct:/jobs/a\n0::/user.slice/jobs\n";
        let mounts = "\
35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
36 25 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
";
        // Hybrid: the v2 hierarchy has no memory controller, so no memory.events there.
        let hybrid = counter_file(cgroups, mounts, |p| p.ends_with("memory.oom_control"));
        assert_eq!(
            hybrid.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory/jobs/a/memory.oom_control"))
        );
        let unified = counter_file(cgroups, mounts, |_| true);
        assert_eq!(
            unified.as_deref(),
            Some(Path::new(
                "/sys/fs/cgroup/unified/user.slice/jobs/memory.events"
            ))
        );
        // A container's cgroup namespace: the mount's root is the container's cgroup.
        let container = counter_file(
            "0::/\n",
            "500 400 0:40 / /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n",
            |_| true,
        );
        assert_eq!(
            container.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory.events"))
        );
    }

    #[test]
    fn the_kernel_log_is_read_to_its_end_quickly_when_readable() {
        let mut log = KernelLog::from_oldest();
        if !log.readable() {
            println!("SKIPPED: {KMSG} is not readable here");
            return;
        }
        let me = ProcessId::of(std::process::id() as i32)
            .expect("stat")
            .expect("alive");
        let check = log.oom_kill_of(me);
        eprintln!(
            "the whole kernel log: {} bytes in {:.3} ms",
            check.kmsg_bytes, check.took_ms
        );
        assert_eq!(check.finding, OomFinding::NotOom, "{check:?}");
        assert!(check.kmsg_bytes > 0);
    }
}
