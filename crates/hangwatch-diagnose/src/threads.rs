//! Threads of a process tree, from `/proc/PID/task/TID/{stat,wchan}`.

use std::io;

use hangwatch_process::stat::read_stat_file;
use hangwatch_process::tree::ProcessTable;
use hangwatch_protocol::report::{ProcessSnapshot, ThreadSnapshot};

/// Every live descendant of `root` with its threads, parents first.
pub fn snapshot_tree(root: i32) -> io::Result<Vec<ProcessSnapshot>> {
    let table = ProcessTable::scan()?;
    Ok(table
        .descendants(root)
        .into_iter()
        .filter(|stat| !stat.is_zombie())
        .map(|stat| ProcessSnapshot {
            process: stat.info(),
            threads: threads(stat.pid),
        })
        .collect())
}

/// The threads of `pid`; empty when the process is gone.
#[must_use]
pub fn threads(pid: i32) -> Vec<ThreadSnapshot> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<ThreadSnapshot> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|tid| {
            let path = format!("/proc/{pid}/task/{tid}/stat");
            let stat = read_stat_file(std::path::Path::new(&path)).ok()??;
            let wchan = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/wchan"))
                .ok()
                .and_then(|text| parse_wchan(&text));
            Some(ThreadSnapshot {
                tid,
                name: stat.comm,
                state: stat.state.to_string(),
                wchan: if stat.state == 'R' { None } else { wchan },
            })
        })
        .collect();
    out.sort_by_key(|t| t.tid);
    out
}

/// `wchan` holds a kernel symbol, or `0` when the thread is not waiting (or the kernel hides
/// it).
pub(crate) fn parse_wchan(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty() && text != "0").then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wchan_zero_means_none() {
        assert_eq!(parse_wchan("0"), None);
        assert_eq!(parse_wchan(""), None);
        assert_eq!(parse_wchan("do_nanosleep").as_deref(), Some("do_nanosleep"));
    }

    #[test]
    fn a_sleeping_child_is_seen_with_its_thread() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        // Wait (bounded) until it has exec'd sleep and is asleep.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let snap = loop {
            let snap = snapshot_tree(std::process::id() as i32).expect("snapshot");
            let found = snap
                .iter()
                .find(|p| p.process.pid == pid && p.threads.iter().any(|t| t.state == "S"))
                .cloned();
            if let Some(found) = found {
                break found;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sleep never seen asleep"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(snap.threads.len(), 1);
        assert_eq!(snap.threads[0].tid, pid);
        assert!(
            snap.process.command.starts_with("sleep"),
            "{:?}",
            snap.process
        );
    }
}
