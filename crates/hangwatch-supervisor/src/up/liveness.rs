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
        let console = self.console.as_ref();
        let view = self.view;
        let mut emit = |line: &[u8]| {
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

    /// Service `i` stalled (or is over memory): diagnose, then stop and restart.
    pub(super) fn on_stall(&mut self, i: usize, cause: StopCause, now: Instant) {
        let diagnose = self.services[i].cfg.diagnose && self.shutdown.is_none();
        let effects = machine::stalled(&mut self.services[i].life, cause, diagnose, now);
        self.perform(i, effects, now);
    }

    /// Starts the bounded diagnosis of service `i`'s program `pid`; [`Msg::Diagnosed`] brings
    /// it back.
    pub(super) fn diagnose_before_stop(&mut self, i: usize, pid: i32) {
        let svc = &self.services[i];
        let cause = match &svc.life {
            Life::Diagnosing { cause, .. } => *cause,
            _ => StopCause::Stall,
        };
        let why = IncidentWhy::before_stop(cause).as_str();
        let reason = format!("{}-{why}", svc.cfg.name);
        let generation = svc.generation;
        let spec = self.diagnose.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let record =
                crate::incident::bounded(spec, Subject::Tree { program: pid }, reason).await;
            let _ = tx
                .send(Msg::Diagnosed {
                    service: i,
                    generation,
                    record,
                })
                .await;
        });
    }

    /// The diagnosis of service `i` before its stop is written: the stop begins.
    pub(super) fn on_diagnosed(
        &mut self,
        i: usize,
        generation: u32,
        record: IncidentRecord,
        now: Instant,
    ) {
        let svc = &self.services[i];
        if svc.generation != generation || !matches!(svc.life, Life::Diagnosing { .. }) {
            return;
        }
        self.services[i].last_incident = record.text_path.clone().map(PathBuf::from);
        self.emit(Some(i), Event::Incident(record));
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
}
