//! `hangwatch events [-f] [--since T] [-n N] [--json]`: the event log, read from the state
//! directory.
//!
//! The log is `events.jsonl`, one JSON record per line, rotated by renaming to
//! `events.jsonl.1`, `.2`… (the highest number is the oldest). Every file is read, oldest
//! first; `-f` then follows the live one through its rotations. Human lines are the time and
//! the event in the words of `hangwatch up`'s console; `--json` prints each record as the log
//! holds it, so fields added later pass through. Reading and following are the state
//! directory's ([`hangwatch_supervisor::state::read::events`],
//! [`hangwatch_supervisor::state::follow`]); this module prints.

use std::io::{self, Write};
use std::os::fd::AsFd;

use hangwatch_protocol::event::{Event, EventRecord};
use hangwatch_supervisor::state::EVENTS_FILE;
use hangwatch_supervisor::state::follow::Follower;
use hangwatch_supervisor::state::read::events::{is_since, read_all};

use crate::cli::EventsArgs;
use crate::commands::out;
use crate::commands::target::Target;

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
            | Event::StallWarning { .. }
            | Event::StallDeferred { .. }
            | Event::Killing { .. }
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
}
