//! Liveness and readiness, as Kubernetes means them, decided from a status reply.
//!
//! One decision serves `/healthz`, `/readyz` and `hangwatch status --check alive|ready`, so a
//! probe over HTTP and an exec probe over the control socket never disagree.
//!
//! - **Alive**: the loop answered (the caller knows; without a reply nothing is alive) and no
//!   service has given up (`failed`). Restarting hangwatch is the cure only for these.
//! - **Ready**: alive, not shutting down, and every service is ready, or has ended well (a
//!   one-shot job that exited 0 under `restart = "never"` or `"on-failure"`); none is stalled
//!   (being diagnosed, or past its liveness deadline at the time of the reply).

use hangwatch_protocol::control::{ServiceStatus, State, Status};
use serde::Serialize;

/// Which question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `/healthz`, `--check alive`.
    Alive,
    /// `/readyz`, `--check ready`.
    Ready,
}

/// The answer, with what stands in the way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// Whether the check passes.
    pub ok: bool,
    /// Why not, one entry per service in the way (empty when `ok`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

/// A service (or hangwatch itself) that fails a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The service; absent for hangwatch itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Its state word, as `hangwatch status` shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// In words.
    pub reason: String,
}

impl Health {
    /// The answer when the loop did not reply: nothing is alive or ready.
    #[must_use]
    pub fn unanswered(reason: impl Into<String>) -> Health {
        Health {
            ok: false,
            problems: vec![Problem {
                service: None,
                state: None,
                reason: reason.into(),
            }],
        }
    }
}

/// Decides `check` from `status`.
#[must_use]
pub fn decide(check: Check, status: &Status) -> Health {
    let mut problems = Vec::new();
    if check == Check::Ready
        && let Some(reason) = &status.shutting_down
    {
        problems.push(Problem {
            service: None,
            state: None,
            reason: format!("shutting down: {reason}"),
        });
    }
    for service in &status.services {
        let reason = match check {
            Check::Alive => alive_problem(service),
            Check::Ready => alive_problem(service).or_else(|| ready_problem(service)),
        };
        if let Some(reason) = reason {
            problems.push(Problem {
                service: Some(service.name.clone()),
                state: Some(service.state.as_str().to_owned()),
                reason,
            });
        }
    }
    Health {
        ok: problems.is_empty(),
        problems,
    }
}

fn alive_problem(service: &ServiceStatus) -> Option<String> {
    (service.state == State::Failed).then(|| match &service.last_exit {
        Some(exit) => format!(
            "gave up after {} restarts (last: {}, {})",
            service.restarts, exit.status, exit.reason
        ),
        None => format!("gave up after {} restarts", service.restarts),
    })
}

fn ready_problem(service: &ServiceStatus) -> Option<String> {
    if let Some(heartbeat) = &service.heartbeat
        && heartbeat.age_ms > heartbeat.deadline_ms
    {
        return Some(format!(
            "stalled: no sign of life from {} for {} ms (deadline {} ms)",
            heartbeat.source, heartbeat.age_ms, heartbeat.deadline_ms
        ));
    }
    match service.state {
        State::Ready => None,
        State::Exited if service.last_exit.as_ref().and_then(|e| e.code) == Some(0) => None,
        State::Diagnosing => Some("stalled: being diagnosed before its stop".to_owned()),
        State::Backoff => Some(match service.restart_in_ms {
            Some(ms) => format!("restarting in {ms} ms"),
            None => "restarting".to_owned(),
        }),
        State::Exited => Some(match &service.last_exit {
            Some(exit) => format!("exited ({}, {})", exit.status, exit.reason),
            None => "exited".to_owned(),
        }),
        other => Some(format!("not ready ({})", other.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use hangwatch_protocol::control::{Heartbeat, LastExit};

    use super::*;

    fn service(name: &str, state: State) -> ServiceStatus {
        ServiceStatus {
            name: name.to_owned(),
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

    fn status(services: Vec<ServiceStatus>) -> Status {
        Status {
            pid: 1,
            uptime_ms: 1,
            config: PathBuf::from("/c"),
            state_dir: PathBuf::from("/s"),
            shutting_down: None,
            notify: Default::default(),
            services,
        }
    }

    #[test]
    fn all_ready_is_alive_and_ready() {
        let s = status(vec![service("a", State::Ready), service("b", State::Ready)]);
        assert!(decide(Check::Alive, &s).ok);
        assert!(decide(Check::Ready, &s).ok);
    }

    #[test]
    fn a_service_that_gave_up_is_not_alive() {
        let s = status(vec![
            service("a", State::Ready),
            service("b", State::Failed),
        ]);
        let health = decide(Check::Alive, &s);
        assert!(!health.ok);
        assert_eq!(health.problems.len(), 1);
        assert_eq!(health.problems[0].service.as_deref(), Some("b"));
        assert!(!decide(Check::Ready, &s).ok);
    }

    #[test]
    fn stalled_or_starting_is_alive_but_not_ready() {
        let mut late = service("late", State::Ready);
        late.heartbeat = Some(Heartbeat {
            source: "watchdog".to_owned(),
            age_ms: 1500,
            deadline_ms: 1000,
        });
        let s = status(vec![
            service("a", State::Diagnosing),
            service("b", State::Starting),
            late,
        ]);
        assert!(decide(Check::Alive, &s).ok);
        let health = decide(Check::Ready, &s);
        let reasons: Vec<&str> = health.problems.iter().map(|p| p.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "stalled: being diagnosed before its stop",
                "not ready (starting)",
                "stalled: no sign of life from watchdog for 1500 ms (deadline 1000 ms)",
            ]
        );
    }

    #[test]
    fn a_job_that_ended_well_counts_as_ready() {
        let mut done = service("job", State::Exited);
        done.last_exit = Some(LastExit {
            status: "code 0".to_owned(),
            code: Some(0),
            reason: "exited".to_owned(),
            at_unix_ms: 0,
        });
        let mut broken = done.clone();
        broken.name = "broken".to_owned();
        broken.last_exit = Some(LastExit {
            status: "code 3".to_owned(),
            code: Some(3),
            reason: "exited".to_owned(),
            at_unix_ms: 0,
        });
        assert!(decide(Check::Ready, &status(vec![done.clone()])).ok);
        assert!(!decide(Check::Ready, &status(vec![done, broken])).ok);
    }

    #[test]
    fn shutting_down_is_not_ready() {
        let mut s = status(vec![service("a", State::Ready)]);
        s.shutting_down = Some("signal SIGTERM".to_owned());
        assert!(decide(Check::Alive, &s).ok);
        assert!(!decide(Check::Ready, &s).ok);
    }
}
