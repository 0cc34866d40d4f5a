//! Saying whether the kernel's OOM killer killed a program, for both fronts.
//!
//! Only a program that died of a `KILL` hangwatch did not send is asked about: the kernel log
//! ([`hangwatch_process::oom::KernelLog`], opened before the program starts, so that only
//! records of its run are read) answers killed, not, or undecided; an undecided answer may
//! carry a hint from the cgroup's `oom_kill` counter. The look reads only what the kernel
//! logged since the log was opened (or since the last look), bounded in time and bytes
//! ([`hangwatch_process::oom::READ_TIME_LIMIT`]): cheap enough for `up`'s loop, which asks
//! only when a service's program died of a `KILL` it did not send.

use hangwatch_process::oom::{CgroupOomKills, KernelLog};
use hangwatch_process::{ExitStatus, ProcessId, Signal};
use hangwatch_protocol::report::{OomCheck, OomConstraint, OomFinding, OomKill};

/// What a look needs from before the program started.
#[derive(Debug)]
pub(crate) struct OomWatch {
    log: KernelLog,
    /// hangwatch's own memory cgroup's OOM kills when the watch began; programs start there.
    cgroup: Option<CgroupOomKills>,
}

impl OomWatch {
    /// Opens the kernel log at its end and reads the cgroup's counter: before the program
    /// starts.
    pub(crate) fn begin() -> OomWatch {
        OomWatch {
            log: KernelLog::from_now(),
            cgroup: CgroupOomKills::of_self(),
        }
    }

    /// The answer for program `id` that ended with `status`; `None` unless it died of `KILL`.
    /// The caller knows whether hangwatch sent that `KILL`, and asks only when it did not.
    pub(crate) fn check(&mut self, id: ProcessId, status: ExitStatus) -> Option<OomCheck> {
        if !matches!(status, ExitStatus::Signalled { signal, .. } if signal == Signal::KILL.number())
        {
            return None;
        }
        let mut check = self.log.oom_kill_of(id);
        if let OomFinding::Undecided { cgroup_hint, .. } = &mut check.finding {
            *cgroup_hint = self.cgroup.as_ref().and_then(CgroupOomKills::rose);
        }
        tracing::debug!(
            pid = id.pid,
            took_ms = check.took_ms,
            bytes = check.kmsg_bytes,
            finding = ?check.finding,
            "looked for an OOM kill"
        );
        Some(check)
    }

    /// For a long-lived watch (`up`): the cgroup counter as of a program's start, so that a
    /// hint speaks of its run (one small file read; the file was found once, at the start).
    pub(crate) fn rebase_cgroup(&mut self) {
        if let Some(cgroup) = &mut self.cgroup {
            cgroup.refresh();
        }
    }
}

/// How the program died, in words: `killed by the kernel's OOM killer (memory cgroup /x over
/// its limit; anon-rss 251 MiB)`, or why that is not known.
pub(crate) fn words(check: &OomCheck) -> String {
    match &check.finding {
        OomFinding::Killed(kill) => format!("killed by the kernel's OOM killer ({})", why(kill)),
        OomFinding::NotOom => {
            "killed by KILL from outside hangwatch (not the kernel's OOM killer: the kernel log \
             has no OOM kill of it)"
                .to_owned()
        }
        OomFinding::Undecided { why, cgroup_hint } => {
            let mut text = format!(
                "killed by KILL from outside hangwatch (whether by the kernel's OOM killer is \
                 undecided: {why})"
            );
            if let Some(hint) = cgroup_hint {
                text.push_str(&format!(
                    "; the cgroup's oom_kill count rose during its run ({} → {} in {}); the \
                     kernel log is not readable to confirm",
                    hint.before, hint.after, hint.file
                ));
            }
            text
        }
        _ => "killed by KILL".to_owned(),
    }
}

/// What ran out and how much the program held.
fn why(kill: &OomKill) -> String {
    let what = match (kill.constraint, &kill.cgroup) {
        (OomConstraint::MemoryCgroup, Some(cgroup)) => {
            format!("memory cgroup {cgroup} over its limit")
        }
        (OomConstraint::MemoryCgroup, None) => "its memory cgroup over its limit".to_owned(),
        (OomConstraint::Cpuset, _) => "its cpuset's memory nodes out of memory".to_owned(),
        (OomConstraint::MemoryPolicy, _) => "its memory policy's nodes out of memory".to_owned(),
        _ => "the machine out of memory".to_owned(),
    };
    match kill.anon_rss_kib {
        Some(kib) => format!("{what}; anon-rss {} MiB", kib / 1024),
        None => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kill(constraint: OomConstraint, cgroup: Option<&str>) -> OomCheck {
        OomCheck {
            finding: OomFinding::Killed(OomKill {
                pid: 42,
                task: "python3".into(),
                constraint,
                cgroup: cgroup.map(Into::into),
                task_cgroup: cgroup.map(Into::into),
                anon_rss_kib: Some(251 * 1024 + 100),
                total_vm_kib: Some(400 * 1024),
                at_usec: 1,
            }),
            took_ms: 0.1,
            kmsg_bytes: 100,
        }
    }

    #[test]
    fn an_oom_kill_says_what_ran_out() {
        assert_eq!(
            words(&kill(OomConstraint::MemoryCgroup, Some("/foo"))),
            "killed by the kernel's OOM killer (memory cgroup /foo over its limit; anon-rss 251 MiB)"
        );
        assert_eq!(
            words(&kill(OomConstraint::Machine, None)),
            "killed by the kernel's OOM killer (the machine out of memory; anon-rss 251 MiB)"
        );
    }

    #[test]
    fn an_undecided_answer_says_why_and_hedges_its_hint() {
        let check = OomCheck {
            finding: OomFinding::Undecided {
                why: "open /dev/kmsg: Permission denied (os error 13)".into(),
                cgroup_hint: Some(hangwatch_protocol::report::CgroupOomHint {
                    file: "/sys/fs/cgroup/memory.events".into(),
                    before: 0,
                    after: 1,
                }),
            },
            took_ms: 0.0,
            kmsg_bytes: 0,
        };
        let text = words(&check);
        assert!(text.contains("undecided: open /dev/kmsg"), "{text}");
        assert!(text.contains("rose during its run (0 → 1"), "{text}");
        assert!(
            !text.starts_with("killed by the kernel's OOM killer"),
            "{text}"
        );
    }
}
