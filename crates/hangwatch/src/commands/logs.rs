//! `hangwatch logs [NAME] [-f] [-n N]`: the services' output, read from their log files.
//!
//! Each service's log is `STATE_DIR/logs/NAME.log` (`TIME out|err | text` lines), rotated to
//! `NAME.log.1`, `.2`…. The last N lines of each service are taken across rotations (as PM2
//! does per process; N defaults to tail's 10) and, for several services, interleaved by their
//! timestamps with the name in front. `-f` then follows: new lines as they are written, through
//! rotations, and the logs of services that appear later. Reading and following are the state
//! directory's ([`hangwatch_supervisor::state::read::logs`],
//! [`hangwatch_supervisor::state::follow`]); this module chooses and prints.

use std::io::{self, Write};
use std::os::fd::AsFd;

use anyhow::Context as _;
use hangwatch_supervisor::state::console::color_of;
use hangwatch_supervisor::state::follow::Follower;
use hangwatch_supervisor::state::logfile::{self, service_of};
use hangwatch_supervisor::state::read::logs::{by_time, line_time, logged_services, tail};

use crate::cli::LogsArgs;
use crate::commands::out;
use crate::commands::target::Target;

/// Prints the logs; 0, or 125 with a message (no state directory, an unknown service).
pub fn main(args: &LogsArgs) -> i32 {
    out::finish(run(args))
}

fn run(args: &LogsArgs) -> anyhow::Result<i32> {
    let target = Target::resolve(&args.target);
    let logs_dir = target
        .existing_state_dir()?
        .join(hangwatch_supervisor::state::LOGS_DIR);
    let single = args.name.is_some();
    let mut follower = if args.follow {
        let pick_up = move |name: &str| !single && service_of(name).is_some();
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
        let (lines, opened) =
            tail(&logs_dir, name, args.lines).with_context(|| format!("read the log of {name}"))?;
        backlog.extend(lines.into_iter().map(|line| (i, line)));
        if let Some(follower) = follower.as_mut() {
            follower.add(&logfile::file_name(name), opened);
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
            let name = service_of(follower.name(file)).unwrap_or_default();
            printer.width = printer.width.max(name.chars().count());
            printer.line(&mut stdout, name, &line)?;
        }
        stdout.flush()?;
    }
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
        match line_time(line).filter(|_| self.color) {
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
