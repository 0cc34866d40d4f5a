//! `hangwatch events [-f] [--since T] [-n N] [--json]`: the event log, read from the state
//! directory.
//!
//! The log is `events.jsonl`, one JSON record per line, rotated by renaming to
//! `events.jsonl.1`, `.2`… (the highest number is the oldest). Every file is read, oldest
//! first; `-f` then follows the live one through its rotations. Human lines are the time and
//! the event in the words of `hangwatch up`'s console; `--json` prints each record as the log
//! holds it, so fields added later pass through.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context as _;
use hangwatch_protocol::event::{Event, EventRecord};

use crate::cli::EventsArgs;
use crate::commands::follow::{Follower, Opened, last_lines};
use crate::commands::out;
use crate::commands::target::Target;
use crate::commands::time::parse_time;

/// The live event log's name in the state directory.
pub const EVENTS_FILE: &str = "events.jsonl";

/// Prints the events; 0, or 125 with a message (no state directory).
pub fn main(args: &EventsArgs) -> i32 {
    out::finish(run(args))
}

fn run(args: &EventsArgs) -> anyhow::Result<i32> {
    let target = Target::resolve(&args.target);
    let state = target.existing_state_dir()?.to_owned();
    let mut follower = if args.follow {
        Some(Follower::new(&state, |_| false)?)
    } else {
        None
    };
    let (mut lines, opened) = read_all(&state)?;
    if let Some(follower) = follower.as_mut() {
        follower.add(EVENTS_FILE, opened);
    }
    lines.retain(|line| is_since(line, args.since));
    if let Some(n) = args.lines {
        lines.drain(..lines.len().saturating_sub(n));
    }
    let printer = Printer {
        json: args.json,
        color: !args.json && out::use_color(args.color),
    };
    let mut stdout = out::stdout();
    for line in &lines {
        printer.line(&mut stdout, line)?;
    }
    stdout.flush()?;
    let Some(mut follower) = follower else {
        return Ok(0);
    };
    loop {
        for line in follower.wait(io::stdout().as_fd())? {
            if is_since(&line.bytes, args.since) {
                printer.line(&mut stdout, &line.bytes)?;
            }
        }
        stdout.flush()?;
    }
}

/// Every line of the rotated event files (oldest first) and of the live one, and the live
/// file, open, with where its whole lines end.
pub fn read_all(state: &Path) -> anyhow::Result<(Vec<Vec<u8>>, Opened)> {
    let mut lines = Vec::new();
    for path in rotated_files(state)? {
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            // Rotated away (further) while listing: what it held is in the next one.
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => {
                return Err(err).with_context(|| format!("read {}", path.display()));
            }
        };
        lines.extend(
            text.split(|&b| b == b'\n')
                .filter(|line| !line.is_empty())
                .map(<[u8]>::to_vec),
        );
    }
    let live = state.join(EVENTS_FILE);
    let opened = match File::open(&live) {
        Ok(file) => {
            let end = file.metadata()?.len();
            // Where the whole lines end; a record still being written is left for a follower.
            let (_, whole_end) = last_lines(&file, end, 0)?;
            let mut text = vec![0u8; whole_end as usize];
            file.read_exact_at(&mut text, 0)
                .with_context(|| format!("read {}", live.display()))?;
            lines.extend(
                text.split(|&b| b == b'\n')
                    .filter(|line| !line.is_empty())
                    .map(<[u8]>::to_vec),
            );
            Some((file, whole_end))
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => return Err(err).with_context(|| format!("read {}", live.display())),
    };
    Ok((lines, opened))
}

/// `events.jsonl.N` in the state directory, the highest N (the oldest) first.
fn rotated_files(state: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(state).with_context(|| format!("read {}", state.display()))?;
    let prefix = format!("{EVENTS_FILE}.");
    let mut numbered: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let n = name.strip_prefix(&prefix)?.parse().ok()?;
            Some((n, entry.path()))
        })
        .collect();
    numbered.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    Ok(numbered.into_iter().map(|(_, path)| path).collect())
}

/// Whether the record on `line` is at or after `since` (a record without a readable time is
/// kept).
fn is_since(line: &[u8], since: Option<SystemTime>) -> bool {
    #[derive(serde::Deserialize)]
    struct At {
        at: String,
    }
    let Some(since) = since else {
        return true;
    };
    serde_json::from_slice::<At>(line)
        .ok()
        .and_then(|record| parse_time(&record.at))
        .is_none_or(|at| at >= since)
}

struct Printer {
    json: bool,
    color: bool,
}

impl Printer {
    fn line(&self, out: &mut impl Write, line: &[u8]) -> io::Result<()> {
        if self.json {
            out.write_all(line)?;
            return out.write_all(b"\n");
        }
        let (at, text, alarm) = match serde_json::from_slice::<EventRecord>(line) {
            Ok(record) => {
                let text = words(&record);
                (record.at, text, is_alarm(&record.event))
            }
            Err(_) => match serde_json::from_slice::<serde_json::Value>(line) {
                // A kind of event this hangwatch does not know (written by a newer one).
                Ok(value) => {
                    let field =
                        |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
                    let text = format!(
                        "{} {}",
                        field("service").unwrap_or_else(|| "hangwatch".to_owned()),
                        field("event").unwrap_or_else(|| "(unknown event)".to_owned())
                    );
                    (field("at").unwrap_or_default(), text, false)
                }
                Err(_) => {
                    out.write_all(line)?;
                    return out.write_all(b"\n");
                }
            },
        };
        let indent = at.chars().count() + 2;
        for (i, text) in text.lines().enumerate() {
            match (i, self.color) {
                (0, true) => write!(out, "\x1b[2m{at}\x1b[0m  ")?,
                (0, false) => write!(out, "{at}  ")?,
                _ => write!(out, "{:indent$}", "")?,
            }
            if self.color && alarm {
                writeln!(out, "\x1b[31m{text}\x1b[0m")?;
            } else {
                writeln!(out, "{text}")?;
            }
        }
        Ok(())
    }
}

/// The event in the words of `up`'s console; events it leaves out get their kind.
fn words(record: &EventRecord) -> String {
    if let Some(text) = hangwatch_supervisor::up::describe(record) {
        return text;
    }
    let name = record.service.as_deref().unwrap_or("hangwatch");
    match &record.event {
        Event::Ready { by, .. } => format!("{name} ready ({by})"),
        event => {
            let kind = serde_json::to_value(event)
                .ok()
                .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "event".to_owned());
            format!("{name} {kind}")
        }
    }
}

/// Events a reader should not miss: shown in red on a terminal.
fn is_alarm(event: &Event) -> bool {
    matches!(
        event,
        Event::StartFailed { .. }
            | Event::NotReady { .. }
            | Event::Stalled { .. }
            | Event::OverMemory { .. }
            | Event::Incident(_)
            | Event::GaveUp { .. }
            | Event::LogDropped { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(line: &str) -> String {
        let mut out = Vec::new();
        Printer {
            json: false,
            color: false,
        }
        .line(&mut out, line.as_bytes())
        .expect("write");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn human_lines_use_the_console_words() {
        assert_eq!(
            render(
                r#"{"at":"2026-11-24T10:00:00.123Z","service":"web","event":"started","pid":42,"restarts":0}"#
            ),
            "2026-11-24T10:00:00.123Z  web started (pid 42)\n"
        );
        assert_eq!(
            render(
                r#"{"at":"2026-11-24T10:00:00.123Z","service":"web","event":"ready","after_ms":1.0,"by":"started"}"#
            ),
            "2026-11-24T10:00:00.123Z  web ready (started)\n"
        );
        // A multi-line text keeps its lines under the first.
        let incident = render(
            r#"{"at":"2026-11-24T10:00:00.123Z","service":"w","event":"incident","text_path":"/s/i.txt","json_path":"/s/i.json","verdict":["deadlock"],"took_ms":200.0}"#,
        );
        assert_eq!(
            incident,
            "2026-11-24T10:00:00.123Z  w diagnosed: deadlock\n                            incident: /s/i.txt\n"
        );
        // A newer kind of event, and a line that is not JSON.
        assert_eq!(
            render(r#"{"at":"2026-11-24T10:00:00.123Z","service":"w","event":"teleported"}"#),
            "2026-11-24T10:00:00.123Z  w teleported\n"
        );
        assert_eq!(render("garbage"), "garbage\n");
    }

    #[test]
    fn rotated_files_come_oldest_first() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path();
        std::fs::write(dir.join("events.jsonl.2"), "a\nb\n").expect("write");
        std::fs::write(dir.join("events.jsonl.1"), "c\n").expect("write");
        std::fs::write(dir.join("events.jsonl.10"), "0\n").expect("write");
        std::fs::write(dir.join("events.jsonl"), "d\ne\npartial").expect("write");
        let (lines, opened) = read_all(dir).expect("read");
        let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        assert_eq!(lines, [&b"0"[..], b"a", b"b", b"c", b"d", b"e"]);
        assert_eq!(opened.map(|(_, end)| end), Some(4));
    }

    #[test]
    fn since_keeps_later_records() {
        let since = parse_time("2026-11-24T10:00:00Z");
        assert!(is_since(br#"{"at":"2026-11-24T10:00:00.001Z"}"#, since));
        assert!(!is_since(br#"{"at":"2026-11-24T09:59:59.999Z"}"#, since));
        assert!(is_since(b"not json", since));
    }
}
