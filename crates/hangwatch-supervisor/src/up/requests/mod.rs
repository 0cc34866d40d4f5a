//! What the supervisor does with the control socket's requests (see [`super::control`] for the
//! socket itself): status, start/stop/restart of one service, the shutdown, a live diagnosis,
//! and reload.
//!
//! A request that changes a service acts through the same steps as everything else (a stop
//! with its grace and escalation, a start once the dependencies are ready) and parks its reply
//! as a [`Waiter`]; after every wake-up the loop answers the waiters whose service got where
//! they wanted. A client that hangs up meanwhile changes nothing: the service still gets there.

use hangwatch_protocol::control::{ErrorKind, ErrorReply, Reply, Request};
use hangwatch_protocol::event::Event;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Supervisor;
use super::state::Life;

mod detach;
mod diagnose;
mod lifecycle;
mod reload;
mod status;

/// A client waiting for a service to get somewhere.
pub(crate) struct Waiter {
    service: usize,
    want: Want,
    reply: oneshot::Sender<Reply>,
}

/// Where the waiter's service must get.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Down: no stop or diagnosis in progress.
    Down,
    /// Up again: a program newer than generation `after` is ready (or failed to become so).
    Up { after: u32 },
}

impl Supervisor {
    pub(in crate::up) fn on_request(
        &mut self,
        request: Request,
        reply: oneshot::Sender<Reply>,
        written: oneshot::Receiver<()>,
        now: Instant,
    ) {
        if let Request::Start { service } | Request::Restart { service } | Request::Stop { service } =
            &request
            && let Some(copies) = self.copies_of(service)
        {
            return self.group_request(&request, copies, reply, now);
        }
        let answer = match request {
            Request::Status { service } => {
                let _ = reply.send(self.status_reply(service.as_deref(), now));
                return;
            }
            Request::Start { service } => self.start_request(&service, false, reply, now),
            Request::Restart { service } => self.start_request(&service, true, reply, now),
            Request::Stop { service } => self.stop_request(&service, reply, now),
            Request::Down => {
                self.emit(
                    None,
                    Event::Requested {
                        request: "down".to_owned(),
                    },
                );
                self.begin_shutdown("down requested".to_owned(), 0);
                self.down_waiters.push((reply, written));
                return;
            }
            Request::Diagnose { service, sample_ms } => {
                self.diagnose_request(&service, sample_ms, reply)
            }
            Request::Reload => {
                let _ = reply.send(self.reload());
                return;
            }
        };
        if let Some((reply, answer)) = answer {
            let _ = reply.send(answer);
        }
    }

    /// The copies of `name` when it names no service itself but a service with `replicas`.
    fn copies_of(&self, name: &str) -> Option<Vec<String>> {
        let live = |s: &&super::service::Svc| !matches!(s.life, Life::Removed);
        if self
            .services
            .iter()
            .filter(live)
            .any(|s| s.cfg.name == name)
        {
            return None;
        }
        let copies: Vec<String> = self
            .services
            .iter()
            .filter(live)
            .filter(|s| s.cfg.replica.as_ref().is_some_and(|r| r.group == name))
            .map(|s| s.cfg.name.clone())
            .collect();
        (!copies.is_empty()).then_some(copies)
    }

    /// `start`, `stop` or `restart` of every copy of a service with `replicas`: each copy's
    /// request runs as if asked alone, and the answer lists where each ended up (or the first
    /// error).
    fn group_request(
        &mut self,
        request: &Request,
        copies: Vec<String>,
        reply: oneshot::Sender<Reply>,
        now: Instant,
    ) {
        let mut answers = Vec::with_capacity(copies.len());
        for service in copies {
            let one = match request {
                Request::Start { .. } => Request::Start { service },
                Request::Restart { .. } => Request::Restart { service },
                _ => Request::Stop { service },
            };
            let (tx, rx) = oneshot::channel();
            let (_written, written_rx) = oneshot::channel();
            self.on_request(one, tx, written_rx, now);
            answers.push(rx);
        }
        tokio::spawn(async move {
            let mut statuses = Vec::with_capacity(answers.len());
            for answer in answers {
                match answer.await {
                    Ok(Reply::Service(status)) => statuses.push(status),
                    Ok(other) => {
                        let _ = reply.send(other);
                        return;
                    }
                    // The supervisor is on its way out: the client sees the socket close.
                    Err(_) => return,
                }
            }
            let _ = reply.send(Reply::Services { services: statuses });
        });
    }

    /// The index of the service called `name`, or the error to answer.
    pub(in crate::up) fn find(&self, name: &str) -> Result<usize, ErrorReply> {
        self.services
            .iter()
            .position(|s| s.cfg.name == name && !matches!(s.life, Life::Removed))
            .ok_or_else(|| {
                let known: Vec<&str> = self
                    .services
                    .iter()
                    .filter(|s| !matches!(s.life, Life::Removed))
                    .map(|s| s.cfg.name.as_str())
                    .collect();
                ErrorReply::new(
                    ErrorKind::UnknownService,
                    format!("no service `{name}` (services: {})", known.join(", ")),
                )
            })
    }
}

fn error(kind: ErrorKind, message: String) -> Reply {
    Reply::Error(ErrorReply::new(kind, message))
}
