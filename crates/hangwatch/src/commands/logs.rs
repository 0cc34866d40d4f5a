//! `hangwatch logs [NAME] [-f] [-n N]`: the services' output, read from their log files.
//!
//! Each service's log is `STATE_DIR/logs/NAME.log` (`TIME out|err | text` lines), rotated to
//! `NAME.log.1`, `.2`…. The last N lines of each service are taken across rotations (as PM2
//! does per process; N defaults to tail's 10) and, for several services, interleaved by their
//! timestamps with the name in front. `-f` then follows: new lines as they are written, through
//! rotations, and the logs of services that appear later.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::Context as _;
use hangwatch_supervisor::state::console::color_of;

use crate::cli::LogsArgs;
use crate::commands::follow::{Follower, Opened, last_lines};
use crate::commands::out;
use crate::commands::target::Target;

/// Prints the logs; 0, or 125 with a message (no state directory, an unknown service).
pub fn main(args: &LogsArgs) -> i32 {
    out::finish(run(args))
}

fn run(args: &LogsArgs) -> anyhow::Result<i32> {
    let target = Target::resolve(&args.target);
    let logs_dir = target.existing_state_dir()?.join("logs");
    let single = args.name.is_some();
    let mut follower = if args.follow {
        let pick_up = move |name: &str| !single && log_service(name).is_some();
        Some(Follower::new(&logs_dir, pick_up)?)
    } else {
        None
    };
    let logged = logged_services(&logs_dir)?;
    let names = match &args.name {
        Some(name) => {
            let mut known = target.configured_services();
            known.extend(logged.iter().cloned());
            known.sort();
            known.dedup();
            if !known.contains(name) {
                anyhow::bail!(
                    "no service `{name}` in {}: {}",
                    logs_dir.display(),
                    if known.is_empty() {
                        "no service has logged anything yet".to_owned()
                    } else {
                        format!("the services are {}", known.join(", "))
                    }
                );
            }
            vec![name.clone()]
        }
        None => logged,
    };

    let mut printer = Printer {
        color: out::use_color(args.color),
        single,
        width: names.iter().map(|n| n.chars().count()).max().unwrap_or(0),
    };
    let mut backlog: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (lines, opened) = tail_of(&logs_dir, name, args.lines)
            .with_context(|| format!("read the log of {name}"))?;
        backlog.extend(lines.into_iter().map(|line| (i, line)));
        if let Some(follower) = follower.as_mut() {
            follower.add(&format!("{name}.log"), opened);
        }
    }
    let mut stdout = out::stdout();
    for (i, line) in by_time(backlog) {
        printer.line(&mut stdout, &names[i], &line)?;
    }
    stdout.flush()?;
    let Some(mut follower) = follower else {
        return Ok(0);
    };
    loop {
        let lines = follower.wait(io::stdout().as_fd())?;
        let batch = lines
            .into_iter()
            .map(|line| (line.file, line.bytes))
            .collect();
        for (file, line) in by_time(batch) {
            let name = log_service(follower.name(file)).unwrap_or_default();
            printer.width = printer.width.max(name.chars().count());
            printer.line(&mut stdout, name, &line)?;
        }
        stdout.flush()?;
    }
}

/// The service a live log file belongs to: `NAME.log` (not a rotated `NAME.log.1`, not a
/// hidden file).
fn log_service(file_name: &str) -> Option<&str> {
    file_name
        .strip_suffix(".log")
        .filter(|name| !name.is_empty() && !file_name.starts_with('.'))
}

/// The services that have a log, live or rotated, sorted.
fn logged_services(logs_dir: &Path) -> anyhow::Result<Vec<String>> {
    let entries = std::fs::read_dir(logs_dir)
        .with_context(|| format!("read the log directory {}", logs_dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter_map(|file| {
            let live = file.strip_suffix(".log");
            let rotated = file
                .rsplit_once(".log.")
                .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .map(|(name, _)| name);
            live.or(rotated)
                .filter(|name| !name.is_empty() && !file.starts_with('.'))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// The last `n` lines of `name`'s log, oldest first, reaching into rotated files when the live
/// one has fewer; and the live file, [`Opened`].
fn tail_of(logs_dir: &Path, name: &str, n: usize) -> io::Result<(Vec<Vec<u8>>, Opened)> {
    let live = logs_dir.join(format!("{name}.log"));
    let (mut lines, opened) = match File::open(&live) {
        Ok(file) => {
            let end = file.metadata()?.len();
            let (lines, whole_end) = last_lines(&file, end, n)?;
            (lines, Some((file, whole_end)))
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => (Vec::new(), None),
        Err(err) => return Err(err),
    };
    let mut rotation = 1;
    while lines.len() < n {
        let path = logs_dir.join(format!("{name}.log.{rotation}"));
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => break,
            Err(err) => return Err(err),
        };
        let end = file.metadata()?.len();
        // A rotated file is complete: a last line without `\n` counts.
        let (mut older, whole_end) = last_lines(&file, end, n - lines.len())?;
        if whole_end < end && older.len() < n - lines.len() {
            let mut rest = vec![0u8; (end - whole_end) as usize];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut rest, whole_end)?;
            older.push(rest);
            if older.len() > n - lines.len() {
                older.remove(0);
            }
        }
        older.extend(lines);
        lines = older;
        rotation += 1;
    }
    Ok((lines, opened))
}

/// `2026-11-24T10:00:00.123Z`, the time at the start of a log line.
fn timestamp(line: &[u8]) -> Option<&[u8]> {
    (line.len() > 24 && line[23] == b'Z' && line[24] == b' ').then(|| &line[..24])
}

/// Orders lines of several files by their timestamps, keeping each file's order (a line
/// without a time goes with the line before it).
fn by_time(lines: Vec<(usize, Vec<u8>)>) -> Vec<(usize, Vec<u8>)> {
    let mut last: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut keyed: Vec<(Vec<u8>, usize, usize, Vec<u8>)> = Vec::with_capacity(lines.len());
    for (seq, (file, line)) in lines.into_iter().enumerate() {
        let key = match timestamp(&line) {
            Some(stamp) => {
                match last.iter_mut().find(|(f, _)| *f == file) {
                    Some(entry) => entry.1 = stamp.to_vec(),
                    None => last.push((file, stamp.to_vec())),
                }
                stamp.to_vec()
            }
            None => last
                .iter()
                .find(|(f, _)| *f == file)
                .map(|(_, stamp)| stamp.clone())
                .unwrap_or_default(),
        };
        keyed.push((key, seq, file, line));
    }
    // RFC 3339 in UTC with fixed width sorts as text.
    keyed.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    keyed
        .into_iter()
        .map(|(_, _, file, line)| (file, line))
        .collect()
}

/// How lines are printed.
struct Printer {
    color: bool,
    /// One service: its lines as the log holds them, without a name.
    single: bool,
    /// The width names are padded to.
    width: usize,
}

impl Printer {
    fn line(&self, out: &mut impl Write, service: &str, line: &[u8]) -> io::Result<()> {
        if !self.single {
            if self.color {
                write!(out, "\x1b[{}m", color_of(service))?;
            }
            out::pad(out, service, self.width)?;
            out.write_all(if self.color { b"\x1b[0m " } else { b" " })?;
        }
        match timestamp(line).filter(|_| self.color) {
            Some(stamp) => {
                // The time dimmed, `err` in red, the text as the program wrote it.
                let rest = &line[25..];
                write!(out, "\x1b[2m")?;
                out.write_all(stamp)?;
                write!(out, "\x1b[0m ")?;
                match rest.strip_prefix(b"err") {
                    Some(after) => {
                        out.write_all(b"\x1b[31merr\x1b[0m")?;
                        out.write_all(after)?;
                    }
                    None => out.write_all(rest)?,
                }
                if rest.contains(&0x1b) {
                    out.write_all(b"\x1b[0m")?;
                }
            }
            None => out.write_all(line)?,
        }
        out.write_all(b"\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_several_files_interleave_by_time() {
        let lines = vec![
            (0, b"2026-11-24T10:00:00.100Z out | a1".to_vec()),
            (0, b"continued".to_vec()),
            (0, b"2026-11-24T10:00:00.300Z out | a2".to_vec()),
            (1, b"2026-11-24T10:00:00.200Z err | b1".to_vec()),
            (1, b"2026-11-24T10:00:00.300Z out | b2".to_vec()),
        ];
        let sorted: Vec<String> = by_time(lines)
            .into_iter()
            .map(|(_, l)| String::from_utf8_lossy(&l).into_owned())
            .collect();
        let texts: Vec<&str> = sorted
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap_or_default())
            .collect();
        assert_eq!(texts, ["a1", "continued", "b1", "a2", "b2"]);
    }

    #[test]
    fn names_of_log_files() {
        assert_eq!(log_service("web.log"), Some("web"));
        assert_eq!(log_service("a.b.log"), Some("a.b"));
        assert_eq!(log_service("web.log.1"), None);
        assert_eq!(log_service(".web.log"), None);
        let tmp = tempfile::tempdir().expect("temp dir");
        for file in ["web.log", "web.log.1", "old.log.2", "x.txt", "a.b.log"] {
            std::fs::write(tmp.path().join(file), "").expect("write");
        }
        assert_eq!(
            logged_services(tmp.path()).expect("list"),
            ["a.b", "old", "web"]
        );
    }

    #[test]
    fn the_tail_reaches_into_rotated_files() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path();
        std::fs::write(dir.join("s.log.2"), "1\n2\n").expect("write");
        std::fs::write(dir.join("s.log.1"), "3\n4\n").expect("write");
        std::fs::write(dir.join("s.log"), "5\n6").expect("write");
        let (lines, opened) = tail_of(dir, "s", 4).expect("tail");
        assert_eq!(
            lines,
            [b"2".to_vec(), b"3".to_vec(), b"4".to_vec(), b"5".to_vec()]
        );
        assert_eq!(opened.map(|(_, end)| end), Some(2));
        let (lines, _) = tail_of(dir, "s", 10).expect("tail");
        assert_eq!(lines.len(), 5);
        let (lines, opened) = tail_of(dir, "none", 3).expect("tail");
        assert!(lines.is_empty() && opened.is_none());
    }
}
