//! `hangwatch start|stop|restart NAME`, `down` and `reload`. Talking to the supervisor is
//! [`crate::commands::client`]'s.
//!
//! # Exit codes
//!
//! - 0: done (for `start`/`restart`, the service ended up running, or exited with code 0).
//! - 1: the request failed: no supervisor runs for the state directory, this user may not use
//!   it, the supervisor answered with an error (an unknown service, a shutdown in progress), or
//!   the service did not end up where it was asked to be.
//! - 125: a config rejected by `reload` (the code `check` and `up` give a bad config), or
//!   hangwatch itself failed (its output could not be written).

use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use hangwatch_process::ProcessId;
use hangwatch_protocol::control::{
    ClientError, DownReport, ReloadReport, Reply, Request, ServiceStatus, State,
};

use crate::cli::{DownArgs, ReloadArgs, ServiceArgs};
use crate::commands::client::{
    FAILED, call, client_error, connect, error_reply, to_json, unexpected,
};
use crate::commands::out;
use crate::commands::status::{describe_exit, short_duration};
use crate::commands::target::Target;

/// How long `down` waits for the supervisor to end after it closed the connection without its
/// report.
const VANISH_WAIT: Duration = Duration::from_secs(10);

/// What `start`, `stop` and `restart` ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `hangwatch start`.
    Start,
    /// `hangwatch stop`.
    Stop,
    /// `hangwatch restart`.
    Restart,
}

/// `hangwatch start|stop|restart NAME`: one line saying where the service ended up.
pub fn service(verb: Verb, args: &ServiceArgs) -> i32 {
    let target = Target::resolve(&args.target);
    let mut client = match connect(&target) {
        Ok(client) => client,
        Err(code) => return code,
    };
    let service = args.service.clone();
    let request = match verb {
        Verb::Start => Request::Start { service },
        Verb::Stop => Request::Stop { service },
        Verb::Restart => Request::Restart { service },
    };
    let reply = match call(&mut client, &target, &request, args.json) {
        Ok(reply) => reply,
        Err(code) => return code,
    };
    // One service, or every copy of a service with `replicas`.
    let statuses = match &reply {
        Reply::Service(status) => std::slice::from_ref(status),
        Reply::Services { services } => services.as_slice(),
        _ => return unexpected(&reply),
    };
    let code = if statuses.iter().all(|s| ended_where_asked(verb, s)) {
        0
    } else {
        FAILED
    };
    let text = if args.json {
        to_json(&reply)
    } else {
        statuses
            .iter()
            .map(|s| describe_service(s) + "\n")
            .collect()
    };
    out::exit_code(out::print(&text), code)
}

/// Whether the service is where `verb` wanted it: stopped after `stop`; after `start` or
/// `restart`, running, or ended by itself with code 0 (a one-shot task that did its work).
fn ended_where_asked(verb: Verb, status: &ServiceStatus) -> bool {
    match verb {
        Verb::Stop => status.state == State::Stopped,
        Verb::Start | Verb::Restart => match status.state {
            State::Waiting | State::Starting | State::Ready | State::Diagnosing => true,
            State::Exited => status
                .last_exit
                .as_ref()
                .is_some_and(|exit| exit.code == Some(0)),
            State::Backoff | State::Stopping | State::Failed | State::Stopped => false,
        },
    }
}

/// `api: ready (pid 123)`, `api: stopped`, `api: backoff (restart in 1.2s; last exit code 1
/// (exited))`.
pub fn describe_service(status: &ServiceStatus) -> String {
    let mut details = Vec::new();
    if let Some(pid) = status.pid {
        details.push(format!("pid {pid}"));
    }
    if let Some(ms) = status.restart_in_ms {
        details.push(format!("restart in {}", short_duration(ms)));
    }
    // How it ended matters when it ended by itself; after a `stop` it is only the stop.
    if matches!(status.state, State::Exited | State::Failed | State::Backoff)
        && let Some(exit) = &status.last_exit
    {
        details.push(format!("last exit {}", describe_exit(exit)));
    }
    if details.is_empty() {
        format!("{}: {}", status.name, status.state.as_str())
    } else {
        format!(
            "{}: {} ({})",
            status.name,
            status.state.as_str(),
            details.join("; ")
        )
    }
}

/// `hangwatch down`: the bounded shutdown, and who stopped cleanly and who was killed.
///
/// A supervisor that closes the connection without its report (it was killed, or ended before
/// the reply left) is taken to be down only when its process has ended (waited for on a pidfd,
/// at most [`VANISH_WAIT`]) and the state directory's lock is free; then `down` says so and
/// exits 0, without the report. Otherwise it exits 1.
pub fn down(args: &DownArgs) -> i32 {
    let target = Target::resolve(&args.target);
    let mut client = match connect(&target) {
        Ok(client) => client,
        Err(code) => return code,
    };
    // Identify the supervisor (PID and start time) before asking: after a hangup, its PID may
    // name another process.
    let supervisor = ProcessId::of(client.welcome().pid).ok().flatten();
    let reply = match client.call(&Request::Down) {
        Ok(Reply::Error(error)) => return error_reply(&error, args.json),
        Ok(reply) => reply,
        Err(ClientError::Hangup) => return vanished(supervisor, &target),
        Err(err) => return client_error(&err, &target),
    };
    let Reply::Down(report) = &reply else {
        return unexpected(&reply);
    };
    let text = if args.json {
        to_json(&reply)
    } else {
        describe_down(report)
    };
    out::exit_code(out::print(&text), 0)
}

fn describe_down(report: &DownReport) -> String {
    let list = |names: &[String]| {
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    let took = if report.took_ms < 1000 {
        format!("{}ms", report.took_ms)
    } else {
        short_duration(report.took_ms)
    };
    let mut text = format!(
        "hangwatch is down (took {took})\nstopped cleanly: {}\nkilled: {}\n",
        list(&report.clean),
        list(&report.killed)
    );
    if report.exit_code != 0 {
        text.push_str(&format!(
            "the supervisor exited with code {}\n",
            report.exit_code
        ));
    }
    text
}

/// After a hangup during `down`: waits for the supervisor to end, then checks its lock.
fn vanished(supervisor: Option<ProcessId>, target: &Target) -> i32 {
    let ended = match supervisor {
        Some(id) => wait_for_exit(id, VANISH_WAIT),
        None => true,
    };
    if ended && lock_is_free(&target.state_dir) {
        eprintln!(
            "hangwatch: the supervisor closed the connection before its report; it has ended and \
             {} is free",
            target.state_dir.display()
        );
        0
    } else {
        eprintln!(
            "hangwatch: the supervisor closed the connection before its report and still holds {}",
            target.state_dir.display()
        );
        FAILED
    }
}

/// Waits (at most `bound`) for `id` to end, on its pidfd: no polling loop.
pub fn wait_for_exit(id: ProcessId, bound: Duration) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let pidfd = match hangwatch_process::pidfd::PidFd::open(id) {
        Ok(Some(pidfd)) => pidfd,
        // Gone already, or its PID names another process now.
        Ok(None) => return true,
        Err(_) => return false,
    };
    let timeout = PollTimeout::try_from(bound).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, timeout), Ok(n) if n > 0)
}

/// Whether nobody holds the state directory's lock: a shared, non-blocking `flock` succeeds
/// (and is released at once). A missing lock file is free.
fn lock_is_free(state_dir: &Path) -> bool {
    use nix::fcntl::{Flock, FlockArg};
    let file = match std::fs::File::open(state_dir.join("lock")) {
        Ok(file) => file,
        Err(err) => return err.kind() == io::ErrorKind::NotFound,
    };
    Flock::lock(file, FlockArg::LockSharedNonblock).is_ok()
}

/// `hangwatch reload`: what was added, removed, changed and left alone.
pub fn reload(args: &ReloadArgs) -> i32 {
    let target = Target::resolve(&args.target);
    let mut client = match connect(&target) {
        Ok(client) => client,
        Err(code) => return code,
    };
    let reply = match call(&mut client, &target, &Request::Reload, args.json) {
        Ok(reply) => reply,
        Err(code) => return code,
    };
    let Reply::Reloaded(report) = &reply else {
        return unexpected(&reply);
    };
    let text = if args.json {
        to_json(&reply)
    } else {
        describe_reload(report)
    };
    out::exit_code(out::print(&text), 0)
}

fn describe_reload(report: &ReloadReport) -> String {
    let list = |names: &[String]| {
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    };
    let mut text = format!(
        "added:     {}\nremoved:   {}\nchanged:   {}\nunchanged: {}\n",
        list(&report.added),
        list(&report.removed),
        list(&report.changed),
        list(&report.unchanged)
    );
    if !report.not_applied.is_empty() {
        text.push_str(&format!(
            "not applied until the next `hangwatch up`: {}\n",
            report.not_applied.join(", ")
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangwatch_protocol::control::LastExit;

    fn service(state: State) -> ServiceStatus {
        ServiceStatus {
            name: "api".into(),
            state,
            pid: None,
            uptime_ms: None,
            restarts: 0,
            last_exit: None,
            heartbeat: None,
            restart_in_ms: None,
            last_incident: None,
            status_text: None,
            rss_bytes: None,
        }
    }

    #[test]
    fn a_service_line_says_where_it_ended_up() {
        let mut ready = service(State::Ready);
        ready.pid = Some(123);
        assert_eq!(describe_service(&ready), "api: ready (pid 123)");
        assert_eq!(describe_service(&service(State::Stopped)), "api: stopped");
        let mut backoff = service(State::Backoff);
        backoff.restart_in_ms = Some(1200);
        backoff.last_exit = Some(LastExit {
            status: "code 1".into(),
            code: None,
            reason: "exited".into(),
            at_unix_ms: 0,
        });
        assert_eq!(
            describe_service(&backoff),
            "api: backoff (restart in 1.2s; last exit code 1 (exited))"
        );
    }

    #[test]
    fn start_succeeds_when_running_or_done_and_stop_when_stopped() {
        assert!(ended_where_asked(Verb::Start, &service(State::Ready)));
        assert!(!ended_where_asked(Verb::Start, &service(State::Failed)));
        assert!(!ended_where_asked(Verb::Restart, &service(State::Backoff)));
        let mut done = service(State::Exited);
        done.last_exit = Some(LastExit {
            status: "code 0".into(),
            code: Some(0),
            reason: "exited".into(),
            at_unix_ms: 0,
        });
        assert!(ended_where_asked(Verb::Start, &done));
        assert!(ended_where_asked(Verb::Stop, &service(State::Stopped)));
        assert!(!ended_where_asked(Verb::Stop, &service(State::Ready)));
    }

    #[test]
    fn down_and_reload_read_as_lists() {
        let down = describe_down(&DownReport {
            took_ms: 1234,
            clean: vec!["api".into(), "db".into()],
            killed: vec![],
            exit_code: 0,
        });
        assert_eq!(
            down,
            "hangwatch is down (took 1.2s)\nstopped cleanly: api, db\nkilled: none\n"
        );
        let reload = describe_reload(&ReloadReport {
            added: vec!["c".into()],
            changed: vec!["b".into()],
            unchanged: vec!["a".into()],
            ..ReloadReport::default()
        });
        assert_eq!(
            reload,
            "added:     c\nremoved:   -\nchanged:   b\nunchanged: a\n"
        );
    }

    #[test]
    fn a_free_lock_and_a_held_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(lock_is_free(dir.path()), "no lock file");
        let file = std::fs::File::create(dir.path().join("lock")).expect("create");
        assert!(lock_is_free(dir.path()));
        let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .expect("lock");
        assert!(!lock_is_free(dir.path()));
        drop(held);
        assert!(lock_is_free(dir.path()));
    }
}
