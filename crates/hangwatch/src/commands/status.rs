//! `hangwatch status [NAME]`: the running supervisor and its services as a table.
//!
//! ```text
//! hangwatch: pid 4242, up 4m12s, config /srv/app/hangwatch.toml
//! NAME    STATE  PID   UPTIME  RESTARTS  LAST EXIT                    HEARTBEAT  INCIDENT
//! db      ready  4243  4m12s   0         -                            -          -
//! worker  ready  4388  12s     2         signal 9 (SIGKILL, stalled)  0.4s/2s    20261124T100000Z-worker.txt
//! ```
//!
//! The STATE word is coloured when stdout is a terminal (ready green; waiting, starting and
//! backoff yellow; failed and exited red; stopped dim), and so is a heartbeat older than half
//! its deadline. `--json` prints the supervisor's reply as it came.

use hangwatch_protocol::control::{
    Heartbeat, LastExit, Reply, Request, ServiceStatus, State, Status,
};

use crate::cli::{CheckArg, StatusArgs};
use crate::commands::client::{call, connect, to_json, unexpected};
use crate::commands::out;
use crate::commands::target::Target;

/// Asks the supervisor for its status and prints it; 0 when printed, 1 when there is no
/// supervisor or no such service.
pub fn main(args: &StatusArgs) -> i32 {
    if let Some(check) = args.check {
        return check_health(args, check);
    }
    let target = Target::resolve(&args.target);
    let mut client = match connect(&target) {
        Ok(client) => client,
        Err(code) => return code,
    };
    let request = Request::Status {
        service: args.service.clone(),
    };
    let reply = match call(&mut client, &target, &request, args.json) {
        Ok(reply) => reply,
        Err(code) => return code,
    };
    let Reply::Status(status) = &reply else {
        return unexpected(&reply);
    };
    let text = if args.json {
        to_json(&reply)
    } else {
        render(status, out::use_color(args.color))
    };
    out::exit_code(out::print(&text), 0)
}

/// `--check alive|ready`: 0 when the answer is yes, 1 otherwise (no supervisor included),
/// with the reasons on stderr; the rules are `/healthz`'s and `/readyz`'s.
fn check_health(args: &StatusArgs, check: CheckArg) -> i32 {
    use hangwatch_supervisor::http::{Check, Health, decide};
    let check = match check {
        CheckArg::Alive => Check::Alive,
        CheckArg::Ready => Check::Ready,
    };
    let target = Target::resolve(&args.target);
    let health = match connect(&target) {
        Ok(mut client) => {
            let request = Request::Status { service: None };
            match call(&mut client, &target, &request, args.json) {
                Ok(Reply::Status(status)) => decide(check, &status),
                Ok(_) | Err(_) => Health::unanswered("the supervisor did not answer"),
            }
        }
        Err(_) => Health::unanswered("no supervisor answers"),
    };
    if args.json {
        let _ = out::print(&format!(
            "{}\n",
            serde_json::to_string(&health).unwrap_or_default()
        ));
    }
    for problem in &health.problems {
        match (&problem.service, &problem.state) {
            (Some(service), Some(state)) => {
                eprintln!("hangwatch: {service} ({state}): {}", problem.reason);
            }
            _ => eprintln!("hangwatch: {}", problem.reason),
        }
    }
    i32::from(!health.ok)
}

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// One cell: its text and the colour it is shown in (if any).
struct Cell {
    text: String,
    color: Option<&'static str>,
}

impl Cell {
    fn plain(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            color: None,
        }
    }
}

/// The header line and the table, aligned, ending with a newline.
pub fn render(status: &Status, color: bool) -> String {
    let mut text = format!(
        "hangwatch: pid {}, up {}, config {}",
        status.pid,
        human_duration(status.uptime_ms),
        status.config.display()
    );
    if let Some(why) = &status.shutting_down {
        text.push_str(&format!(", shutting down: {why}"));
    }
    text.push('\n');
    if status.services.is_empty() {
        text.push_str("no services\n");
        return text;
    }
    let header = [
        "NAME",
        "STATE",
        "PID",
        "UPTIME",
        "RESTARTS",
        "LAST EXIT",
        "HEARTBEAT",
        "INCIDENT",
    ];
    let rows: Vec<Vec<Cell>> = status.services.iter().map(row).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.text.chars().count());
        }
    }
    let header: Vec<Cell> = header.iter().map(|h| Cell::plain(*h)).collect();
    for row in std::iter::once(&header).chain(&rows) {
        let last = row.len() - 1;
        for (i, cell) in row.iter().enumerate() {
            match cell.color.filter(|_| color) {
                Some(code) => text.push_str(&format!("{code}{}{RESET}", cell.text)),
                None => text.push_str(&cell.text),
            }
            if i < last {
                let pad = widths[i] - cell.text.chars().count() + 2;
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        // The last column is not padded, but an empty last cell would leave the spaces of
        // the one before it.
        let trimmed = text.trim_end_matches(' ').len();
        text.truncate(trimmed);
        text.push('\n');
    }
    text
}

fn row(service: &ServiceStatus) -> Vec<Cell> {
    let dash = || Cell::plain("-");
    let state = match service.restart_in_ms {
        Some(ms) if service.state == State::Backoff => {
            format!("{} {}", service.state.as_str(), short_duration(ms))
        }
        _ => service.state.as_str().to_owned(),
    };
    vec![
        Cell::plain(service.name.clone()),
        Cell {
            text: state,
            color: Some(state_color(service.state)),
        },
        service
            .pid
            .map_or_else(dash, |pid| Cell::plain(pid.to_string())),
        service
            .uptime_ms
            .map_or_else(dash, |ms| Cell::plain(human_duration(ms))),
        Cell::plain(service.restarts.to_string()),
        service
            .last_exit
            .as_ref()
            .map_or_else(dash, |exit| Cell::plain(describe_exit(exit))),
        service.heartbeat.as_ref().map_or_else(dash, heartbeat),
        service
            .last_incident
            .as_ref()
            .and_then(|path| path.file_name())
            .map_or_else(dash, |name| Cell::plain(name.to_string_lossy())),
    ]
}

fn state_color(state: State) -> &'static str {
    match state {
        State::Ready => GREEN,
        State::Waiting | State::Starting | State::Backoff | State::Diagnosing | State::Stopping => {
            YELLOW
        }
        State::Failed | State::Exited => RED,
        State::Stopped => DIM,
    }
}

/// `0.4s/2s`, highlighted once the age passes half the deadline.
fn heartbeat(beat: &Heartbeat) -> Cell {
    Cell {
        text: format!(
            "{}/{}",
            short_duration(beat.age_ms),
            short_duration(beat.deadline_ms)
        ),
        color: (beat.age_ms.saturating_mul(2) > beat.deadline_ms).then_some(YELLOW),
    }
}

/// `code 1 (exited)`; a status that has its own parenthesis shares it: `signal 9 (SIGKILL,
/// stalled)`.
pub fn describe_exit(exit: &LastExit) -> String {
    match exit.status.strip_suffix(')') {
        Some(open) if open.contains('(') => format!("{open}, {})", exit.reason),
        _ => format!("{} ({})", exit.status, exit.reason),
    }
}

/// A long duration in its two largest units: `3s`, `4m12s`, `2h3m`, `5d2h`.
pub fn human_duration(ms: u64) -> String {
    let secs = ms / 1000;
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// A short duration with a tenth of a second below ten seconds (`0.4s`, `2s`, `1.5s`), and as
/// [`human_duration`] above.
pub fn short_duration(ms: u64) -> String {
    if ms >= 10_000 {
        return human_duration(ms);
    }
    let tenths = (ms + 50) / 100;
    if tenths % 10 == 0 {
        format!("{}s", tenths / 10)
    } else {
        format!("{}.{}s", tenths / 10, tenths % 10)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human_duration(3_400), "3s");
        assert_eq!(human_duration(252_000), "4m12s");
        assert_eq!(human_duration(7_380_000), "2h3m");
        assert_eq!(human_duration(439_200_000), "5d2h");
        assert_eq!(short_duration(400), "0.4s");
        assert_eq!(short_duration(2_000), "2s");
        assert_eq!(short_duration(1_499), "1.5s");
        assert_eq!(short_duration(9_990), "10s");
        assert_eq!(short_duration(125_000), "2m5s");
    }

    #[test]
    fn an_exit_reads_as_status_and_reason() {
        let exit = |status: &str, reason: &str| LastExit {
            status: status.into(),
            code: None,
            reason: reason.into(),
            at_unix_ms: 0,
        };
        assert_eq!(describe_exit(&exit("code 1", "exited")), "code 1 (exited)");
        assert_eq!(
            describe_exit(&exit("signal 9 (SIGKILL)", "stalled")),
            "signal 9 (SIGKILL, stalled)"
        );
    }

    fn sample() -> Status {
        let base = ServiceStatus {
            name: "db".into(),
            state: State::Ready,
            pid: Some(4243),
            uptime_ms: Some(252_000),
            restarts: 0,
            last_exit: None,
            heartbeat: None,
            restart_in_ms: None,
            last_incident: None,
            status_text: None,
            rss_bytes: None,
        };
        Status {
            pid: 4242,
            uptime_ms: 252_500,
            config: PathBuf::from("/srv/app/hangwatch.toml"),
            state_dir: PathBuf::from("/srv/app/.hangwatch"),
            shutting_down: None,
            notify: Default::default(),
            services: vec![
                base.clone(),
                ServiceStatus {
                    name: "worker".into(),
                    pid: Some(4388),
                    uptime_ms: Some(12_000),
                    restarts: 2,
                    last_exit: Some(LastExit {
                        status: "signal 9 (SIGKILL)".into(),
                        code: None,
                        reason: "stalled".into(),
                        at_unix_ms: 0,
                    }),
                    heartbeat: Some(Heartbeat {
                        source: "watchdog".into(),
                        age_ms: 1_500,
                        deadline_ms: 2_000,
                    }),
                    last_incident: Some(PathBuf::from(
                        "/srv/app/.hangwatch/incidents/20261124T100000Z-worker.txt",
                    )),
                    ..base.clone()
                },
                ServiceStatus {
                    name: "cron".into(),
                    state: State::Backoff,
                    pid: None,
                    uptime_ms: None,
                    restart_in_ms: Some(1_200),
                    ..base
                },
            ],
        }
    }

    #[test]
    fn the_table_is_aligned_and_plain_without_colour() {
        let text = render(&sample(), false);
        let expected = "\
hangwatch: pid 4242, up 4m12s, config /srv/app/hangwatch.toml
NAME    STATE         PID   UPTIME  RESTARTS  LAST EXIT                    HEARTBEAT  INCIDENT
db      ready         4243  4m12s   0         -                            -          -
worker  ready         4388  12s     2         signal 9 (SIGKILL, stalled)  1.5s/2s    20261124T100000Z-worker.txt
cron    backoff 1.2s  -     -       0         -                            -          -
";
        assert_eq!(text, expected);
    }

    #[test]
    fn colour_marks_the_state_and_a_late_heartbeat_only() {
        let mut status = sample();
        status.shutting_down = Some("SIGTERM".into());
        let text = render(&status, true);
        assert!(text.starts_with(
            "hangwatch: pid 4242, up 4m12s, config /srv/app/hangwatch.toml, shutting down: SIGTERM\n"
        ));
        assert!(text.contains("\x1b[32mready\x1b[0m         4243"), "{text}");
        assert!(text.contains("\x1b[33m1.5s/2s\x1b[0m"), "{text}");
        assert!(text.contains("\x1b[33mbackoff 1.2s\x1b[0m"), "{text}");
        assert!(text.lines().nth(1).is_some_and(|h| !h.contains('\x1b')));
    }
}
