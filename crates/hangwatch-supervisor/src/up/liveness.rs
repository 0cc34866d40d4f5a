//! What tells a running service from a stuck one: notify datagrams, output, the stall
//! deadlines and the memory limit; and the diagnosis that precedes a stall's stop.

use std::path::PathBuf;
use std::time::SystemTime;

use hangwatch_config::Readiness;
use hangwatch_protocol::event::Event;
use hangwatch_protocol::report::{IncidentRecord, IncidentWhy, StopCause};
use tokio::time::Instant;

use super::machine;
use super::service::ms;
use super::state::Life;
use super::{Msg, Supervisor, View};

/// How much longer than [`crate::survivors::LOOK_BOUND`] the `KILL` of a stop waits for the
/// look at its survivors: the time for its message to come back.
const LOOK_SLACK: std::time::Duration = std::time::Duration::from_millis(20);
use crate::incident::Subject;
use crate::liveness::notified;
use crate::liveness::notify::Datagram;
use crate::state::{LogFile, Stream};

/// One output line of a service, as `hangwatch up --log-format json` prints it.
#[derive(serde::Serialize)]
struct OutputLine<'a> {
    /// When hangwatch read it, RFC 3339 with milliseconds.
    at: String,
    service: &'a str,
    /// `stdout` or `stderr`.
    stream: &'static str,
    /// The line, without its newline; bytes that are not UTF-8 replaced.
    text: &'a str,
}

impl Supervisor {
    // ----- notify datagrams -----

    pub(super) fn on_datagram(&mut self, datagram: Datagram) {
        let now = Instant::now();
        let service = datagram
            .sender_pid
            .and_then(|sender| self.service_of(sender));
        tracing::trace!(?datagram, ?service, "notify datagram");
        if let Some(telemetry) = &self.telemetry {
            telemetry.notify_datagram(service.is_some());
        }
        let Some(i) = service else {
            tracing::debug!(
                sender = ?datagram.sender_pid,
                "notify datagram from outside every service, ignored"
            );
            self.notify_counts.rejected += 1;
            return;
        };
        self.notify_counts.accepted += 1;
        let svc = &mut self.services[i];
        let at_ms = svc.life.main().map_or(0.0, |m| ms(m.uptime(now)));
        let detector = svc
            .life
            .watch_mut()
            .and_then(|watch| watch.detector.as_mut());
        let asks = notified::apply(&datagram, &mut svc.notified, detector, at_ms, now);
        if let Some(extra) = asks.extend {
            // As systemd: more time for the phase the service is in.
            match &mut svc.life {
                Life::Starting {
                    ready_probe: Some(clock),
                    ..
                } => {
                    if let Some(give_up) = &mut clock.give_up {
                        *give_up = (*give_up).max(now + extra);
                    }
                }
                Life::Stopping { .. } => {
                    if let Some(tree) = svc.life.tree_mut() {
                        tree.extend_grace(now + extra);
                    }
                }
                _ => {}
            }
        }
        if asks.ready && svc.cfg.ready == Readiness::Notify {
            self.mark_ready(i, "notify", now);
        }
    }

    /// The service whose tree `pid` belongs to: its program, or a descendant of it.
    fn service_of(&self, pid: i32) -> Option<usize> {
        let main_of = |at: i32| {
            self.services
                .iter()
                .position(|s| s.life.live_main().is_some_and(|m| m.id.pid == at))
        };
        let program = notified::sender_in_tree(pid, self.own_pid, |at| main_of(at).is_some())
            .inspect_err(|err| tracing::debug!(%err, pid, "cannot place a notify sender"))
            .ok()??;
        main_of(program)
    }

    // ----- output -----

    pub(super) fn on_output(
        &mut self,
        i: usize,
        generation: u32,
        stream: Stream,
        bytes: &[u8],
        now: Instant,
    ) {
        let at = SystemTime::now();
        let svc = &mut self.services[i];
        let index = usize::from(stream == Stream::Err);
        let name = svc.cfg.name.as_str();
        let log = &mut svc.log;
        let tail = if stream == Stream::Err {
            &mut svc.tail.stderr
        } else {
            &mut svc.tail.stdout
        };
        let console = self.console.as_ref();
        let view = self.view;
        let mut emit = |line: &[u8]| {
            tail.line(line, at);
            if let Some(log) = log.as_mut() {
                log.write_line(stream, line, at);
            }
            let Some(console) = console else {
                return;
            };
            match view {
                View::Lines { .. } => console.line(name, stream, line),
                View::Json { output: true } => {
                    if let Ok(json) = serde_json::to_string(&OutputLine {
                        at: crate::state::timestamp(at),
                        service: name,
                        stream: match stream {
                            Stream::Out => "stdout",
                            Stream::Err => "stderr",
                        },
                        text: &String::from_utf8_lossy(line),
                    }) {
                        console.raw(&json);
                    }
                }
                View::Json { output: false } | View::Quiet => {}
            }
        };
        if bytes.is_empty() {
            svc.split[index].finish(&mut emit);
        } else {
            svc.split[index].push(bytes, &mut emit);
            if generation == svc.generation
                && let Some(detector) = svc.life.watch_mut().and_then(|w| w.detector.as_mut())
            {
                detector.on_output(now);
            }
        }
        if let Some((lines, error)) = svc.log.as_mut().and_then(LogFile::take_dropped) {
            self.emit(Some(i), Event::LogDropped { lines, error });
        }
    }

    // ----- stalls -----

    /// Service `i` stalled (or is over memory): diagnose, then stop and restart. A diagnosis
    /// begun a window before this deadline ([`Supervisor::anticipate_stall`]) is kept.
    pub(super) fn on_stall(&mut self, i: usize, cause: StopCause, now: Instant) {
        let diagnose = self.services[i].cfg.diagnose && self.shutdown.is_none();
        let early = self.services[i]
            .life
            .watch_mut()
            .and_then(|watch| watch.early.take())
            .filter(|early| cause == StopCause::Stall && early.target <= now);
        let under_way = diagnose && early.is_some();
        if let Some(early) = early.filter(|_| diagnose) {
            early.keep(self.incident_reason(i, cause), self.additions(i));
            self.incidents_due += 1;
        }
        let effects = machine::stalled(&mut self.services[i].life, cause, diagnose, under_way, now);
        self.perform(i, effects, now);
    }

    /// What an incident about service `i` holds beside the diagnosis: its last output.
    fn additions(&self, i: usize) -> crate::incident::Additions {
        crate::incident::Additions {
            output: self.services[i].tail.last(),
            deferred: self.services[i].stall_deferred,
            ..crate::incident::Additions::default()
        }
    }

    /// The incident's name for a stop of service `i` for `cause`: `api-stalled`, …
    fn incident_reason(&self, i: usize, cause: StopCause) -> String {
        let why = IncidentWhy::before_stop(cause).as_str();
        format!("{}-{why}", self.services[i].cfg.name)
    }

    /// Begins, when due, the diagnosis of service `i` for its next stall deadline, a sampling
    /// window ahead of it, so that the stop waits for no window; throws away one begun for a
    /// deadline that a heartbeat has moved since.
    pub(super) fn anticipate_stall(&mut self, i: usize, now: Instant) {
        let window = self.diagnose.sample;
        let anticipating = self.services[i].cfg.diagnose && self.shutdown.is_none();
        let svc = &mut self.services[i];
        let Some(pid) = svc.life.live_main().map(|m| m.id.pid) else {
            return;
        };
        let generation = svc.generation;
        let Some(watch) = svc.life.watch_mut() else {
            return;
        };
        let next = watch
            .detector
            .as_ref()
            .and_then(|d| d.anticipate(window))
            .filter(|_| anticipating);
        if watch
            .early
            .as_ref()
            .is_some_and(|early| next.is_none_or(|(_, deadline)| early.target != deadline))
        {
            tracing::trace!(service = %svc.cfg.name, "heartbeat in time: early diagnosis dropped");
            watch.early = None;
        }
        let Some((begin, deadline)) = next else {
            return;
        };
        // Past the deadline, the stall itself diagnoses.
        if watch.early.is_some() || begin > now || deadline <= now {
            return;
        }
        let (early, taken, task) = crate::incident::anticipate(
            self.diagnose.clone(),
            Subject::Tree { program: pid },
            deadline,
        );
        watch.early = Some(early);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            // The stop begins once the diagnosis is taken; the incident follows once written.
            let said_taken = async {
                if taken.await.is_ok() {
                    let _ = tx
                        .send(Msg::Taken {
                            service: i,
                            generation,
                        })
                        .await;
                }
            };
            let (record, ()) = tokio::join!(task, said_taken);
            if let Some(record) = record {
                let _ = tx
                    .send(Msg::Diagnosed {
                        service: i,
                        generation,
                        record,
                    })
                    .await;
            }
        });
    }

    /// Starts the bounded diagnosis of service `i`'s program `pid`; [`Msg::Diagnosed`] brings
    /// it back.
    pub(super) fn diagnose_before_stop(&mut self, i: usize, pid: i32) {
        let svc = &self.services[i];
        let cause = match &svc.life {
            Life::Diagnosing { cause, .. } => *cause,
            _ => StopCause::Stall,
        };
        let reason = self.incident_reason(i, cause);
        let additions = self.additions(i);
        let generation = svc.generation;
        let spec = self.diagnose.clone();
        let tx = self.tx.clone();
        self.incidents_due += 1;
        tokio::spawn(async move {
            let record =
                crate::incident::bounded(spec, Subject::Tree { program: pid }, reason, additions)
                    .await;
            let _ = tx
                .send(Msg::Diagnosed {
                    service: i,
                    generation,
                    record,
                })
                .await;
        });
    }

    /// The diagnosis of service `i` before its stop is written: the stop begins, unless it
    /// began when the diagnosis was taken ([`Supervisor::on_taken`]).
    pub(super) fn on_diagnosed(
        &mut self,
        i: usize,
        generation: u32,
        record: IncidentRecord,
        now: Instant,
    ) {
        self.services[i].last_incident = record.text_path.clone().map(PathBuf::from);
        self.emit_incident(i, record);
        self.on_taken(i, generation, now);
    }

    /// The diagnosis of service `i` before its stop is taken: the stop begins (the incident
    /// is being written meanwhile).
    pub(super) fn on_taken(&mut self, i: usize, generation: u32, now: Instant) {
        let svc = &self.services[i];
        if svc.generation != generation || !matches!(svc.life, Life::Diagnosing { .. }) {
            return;
        }
        let effects = machine::diagnosed(&mut self.services[i].life, now);
        self.perform(i, effects, now);
    }

    // ----- memory -----

    /// Samples service `i`'s tree against its `memory_limit` when due.
    pub(super) fn check_memory(&mut self, i: usize, now: Instant) -> Result<(), super::UpError> {
        let own_pid = self.own_pid;
        let svc = &mut self.services[i];
        let Some(watch) = svc.life.watch_mut() else {
            return Ok(());
        };
        if watch.memory_check.is_none_or(|check| check > now) {
            return Ok(());
        }
        watch.memory_check = Some(now + super::lifecycle::MEMORY_EVERY);
        let (Some(limit), Some(main)) = (svc.cfg.memory_limit, svc.life.live_main()) else {
            return Ok(());
        };
        let scope = main.scope(own_pid);
        // One scan serves every service sampled in this wake-up.
        let rss = super::records::tree_rss(&scope, self.table()?);
        if rss > limit {
            self.emit(
                Some(i),
                Event::OverMemory {
                    rss_bytes: rss,
                    limit_bytes: limit,
                },
            );
            self.on_stall(i, StopCause::Memory, now);
        }
        Ok(())
    }

    // ----- survivors of a stop -----

    /// The grace of service `i`'s stop ran out with `survivors` alive: look at why before the
    /// `KILL`, which [`Msg::Survivors`] (or [`crate::survivors::LOOK_BOUND`]) brings.
    pub(super) fn look_at_survivors(
        &mut self,
        i: usize,
        survivors: Vec<hangwatch_protocol::report::ProcessInfo>,
        now: Instant,
    ) {
        let svc = &mut self.services[i];
        let signal = svc
            .life
            .tree_mut()
            .map_or(hangwatch_process::Signal::TERMINATE, |tree| {
                tree.plan().signal
            });
        let Some(stop) = svc.life.stop_mut() else {
            return;
        };
        // The look bounds itself; a little more for the message to come back.
        stop.look = super::state::Look::Looking {
            until: now + crate::survivors::LOOK_BOUND + LOOK_SLACK,
        };
        let generation = svc.generation;
        let python = self.diagnose.python;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let look = crate::survivors::look(survivors, signal, python).await;
            let _ = tx
                .send(Msg::Survivors {
                    service: i,
                    generation,
                    look,
                })
                .await;
        });
    }

    /// The look at the survivors of service `i`'s stop (by `signal`), due by `until`, has not
    /// come back: the `killing` event names them, their handling unknown.
    pub(super) fn killing_unlooked(
        &mut self,
        i: usize,
        survivors: Vec<hangwatch_protocol::report::ProcessInfo>,
        signal: hangwatch_process::Signal,
        until: Instant,
        now: Instant,
    ) {
        let svc = &self.services[i];
        let Some(stop) = svc.life.stop() else {
            return;
        };
        let cause = stop.cause;
        let waited = crate::survivors::LOOK_BOUND + LOOK_SLACK;
        let look_ms = (now - (until - waited)).as_secs_f64() * 1000.0;
        let survivors = survivors
            .into_iter()
            .map(|process| hangwatch_protocol::report::Survivor {
                process,
                survival: hangwatch_protocol::report::Survival {
                    signal: signal.name().to_owned(),
                    handling: "unknown".to_owned(),
                    at: vec![format!(
                        "(the look at it did not come back within {} ms)",
                        waited.as_millis()
                    )],
                },
            })
            .collect();
        let grace_ms = super::service::millis(svc.cfg.stop_grace);
        self.emit(
            Some(i),
            Event::Killing {
                cause,
                grace_ms,
                survivors,
                look_ms,
            },
        );
    }

    /// The survivors of service `i`'s stop were seen: say why each was alive, `KILL` them, and
    /// write the incident.
    pub(super) fn on_survivors(&mut self, i: usize, generation: u32, look: crate::survivors::Look) {
        let svc = &self.services[i];
        let Some(stop) = svc.life.stop() else {
            return;
        };
        if svc.generation != generation || !matches!(stop.look, super::state::Look::Looking { .. })
        {
            return;
        }
        let cause = stop.cause;
        let grace_ms = super::service::millis(svc.cfg.stop_grace);
        self.emit(
            Some(i),
            Event::Killing {
                cause,
                grace_ms,
                survivors: look.survivors.clone(),
                look_ms: look.took.as_secs_f64() * 1000.0,
            },
        );
        if let Err(err) = self.kill_survivors(i) {
            tracing::warn!(%err, "cannot kill the survivors of a stop");
        }
        let dir = self.diagnose.dir.clone();
        let reason = format!(
            "{}-{}",
            self.services[i].cfg.name,
            IncidentWhy::Killed.as_str()
        );
        let output = self.services[i].tail.last();
        let tx = self.tx.clone();
        self.incidents_due += 1;
        tokio::spawn(async move {
            let writing = tokio::task::spawn_blocking(move || {
                crate::incident::write_survivors(&dir, &look, &reason, output)
            });
            let record = writing.await.ok().flatten();
            let _ = tx.send(Msg::Noted { service: i, record }).await;
        });
    }

    /// Service `i` passed its `stall_warn`: diagnose it and log the incident; it keeps running.
    pub(super) fn warn_of_stall(&mut self, i: usize) {
        let svc = &self.services[i];
        if !svc.cfg.diagnose {
            return;
        }
        let Some(pid) = svc.life.live_main().map(|m| m.id.pid) else {
            return;
        };
        let reason = format!("{}-{}", svc.cfg.name, IncidentWhy::StallWarning.as_str());
        let additions = self.additions(i);
        let spec = self.diagnose.clone();
        let tx = self.tx.clone();
        self.incidents_due += 1;
        tokio::spawn(async move {
            let record =
                crate::incident::bounded(spec, Subject::Tree { program: pid }, reason, additions)
                    .await;
            let _ = tx
                .send(Msg::Noted {
                    service: i,
                    record: Some(record),
                })
                .await;
        });
    }
}
