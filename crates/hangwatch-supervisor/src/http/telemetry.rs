//! What the HTTP endpoint knows beyond a status reply: counters derived from the events the
//! loop emits, the last probe results, the notify socket's tallies, the recent events, and a
//! broadcast of new ones for the status page.
//!
//! The loop feeds it with calls that take a short uncontended lock or an atomic add, and never
//! waits on a reader: the broadcast drops what a slow subscriber has not taken (the subscriber
//! is told it lagged and reloads). Counters count from the start of this supervisor, as a
//! Prometheus counter should; a restart of hangwatch resets them, which `rate()` handles.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hangwatch_protocol::event::{Event, EventRecord};
use hangwatch_protocol::report::StallSource;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// Events kept in memory for `/api/events` (older ones are in the event log on disk).
pub(crate) const RECENT_EVENTS: usize = 1000;

/// Incidents kept in memory for `/api/incidents`.
pub(crate) const RECENT_INCIDENTS: usize = 200;

/// Events a subscriber may fall behind by before it is told it lagged.
const BROADCAST_DEPTH: usize = 256;

/// Every stall source, so that each counter exists (at 0) before its first stall and
/// `rate()` and `increase()` see the first one.
pub(crate) const STALL_SOURCES: [StallSource; 6] = [
    StallSource::Notify,
    StallSource::File,
    StallSource::Output,
    StallSource::Trigger,
    StallSource::Stopping,
    StallSource::Probe,
];

/// Which probe of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeKind {
    /// The readiness probe (`ready = { … }`).
    Ready = 0,
    /// The liveness probe (`liveness = { … }`).
    Liveness = 1,
}

impl ProbeKind {
    /// The kind of a probe as the loop names it (`ready`: the readiness probe).
    pub(crate) fn of(ready: bool) -> ProbeKind {
        if ready {
            ProbeKind::Ready
        } else {
            ProbeKind::Liveness
        }
    }
}

/// The last result of one probe.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeResult {
    pub(crate) success: bool,
    pub(crate) took: Duration,
}

/// Counters of one service, by name (a reloaded service keeps its counters).
#[derive(Debug, Default, Clone)]
pub(crate) struct Counters {
    pub(crate) restarts: u64,
    /// Indexed like [`STALL_SOURCES`].
    pub(crate) stalls: [u64; STALL_SOURCES.len()],
    pub(crate) incidents: u64,
    /// Programs the kernel log says the OOM killer killed.
    pub(crate) oom_kills: u64,
    pub(crate) leaked_processes: u64,
    pub(crate) leaked_objects: u64,
    pub(crate) ready_probe: Option<ProbeResult>,
    pub(crate) liveness_probe: Option<ProbeResult>,
    /// When the probe in flight was launched, by [`ProbeKind`].
    launched: [Option<Instant>; 2],
}

/// An event as the HTTP API serves it: the event log's record with its sequence number in this
/// supervisor's life, which `/api/events?since=SEQ` and the stream's `id:` use.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Numbered {
    pub(crate) seq: u64,
    #[serde(flatten)]
    pub(crate) record: EventRecord,
}

/// An incident as `/api/incidents` lists it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IncidentEntry {
    /// The file stem shared by its `.json` and `.txt` reports: `/api/incidents/ID`.
    pub(crate) id: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) at: String,
    pub(crate) verdict: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) seq: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub(crate) services: HashMap<String, Counters>,
    pub(crate) recent: VecDeque<Arc<Numbered>>,
    pub(crate) incidents: VecDeque<IncidentEntry>,
    next_seq: u64,
}

/// Shared by the loop (writer) and the HTTP tasks (readers).
#[derive(Debug)]
pub(crate) struct Telemetry {
    inner: Mutex<Inner>,
    stream: broadcast::Sender<(u64, Arc<str>)>,
    notify_received: AtomicU64,
    notify_rejected: AtomicU64,
}

impl Telemetry {
    pub(crate) fn new() -> Telemetry {
        Telemetry {
            inner: Mutex::new(Inner::default()),
            stream: broadcast::channel(BROADCAST_DEPTH).0,
            notify_received: AtomicU64::new(0),
            notify_rejected: AtomicU64::new(0),
        }
    }

    /// The state, for a reader. A panic while the lock was held leaves counters that are
    /// still counters, so a poisoned lock is used as is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts what `record` says and passes it on to the page's subscribers.
    pub(crate) fn observe(&self, record: &EventRecord) {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        if let Some(name) = &record.service {
            let counters = inner.services.entry(name.clone()).or_default();
            match &record.event {
                Event::Restarting { .. } => counters.restarts += 1,
                Event::Stalled { source, .. } => {
                    if let Some(k) = STALL_SOURCES.iter().position(|s| s == source) {
                        counters.stalls[k] += 1;
                    }
                }
                Event::Incident(_) => counters.incidents += 1,
                Event::Exited { oom: Some(oom), .. } if oom.killed() => counters.oom_kills += 1,
                Event::Leak { leftovers, objects } => {
                    counters.leaked_processes += leftovers.len() as u64;
                    counters.leaked_objects += objects.len() as u64;
                }
                _ => {}
            }
        }
        if let Event::Incident(incident) = &record.event {
            let id = incident
                .json_path
                .as_deref()
                .or(incident.text_path.as_deref())
                .and_then(incident_id);
            inner.incidents.push_back(IncidentEntry {
                id,
                service: record.service.clone(),
                at: record.at.clone(),
                verdict: incident.verdict.clone(),
                error: incident.error.clone(),
                seq,
            });
            if inner.incidents.len() > RECENT_INCIDENTS {
                inner.incidents.pop_front();
            }
        }
        let numbered = Arc::new(Numbered {
            seq,
            record: record.clone(),
        });
        inner.recent.push_back(numbered.clone());
        if inner.recent.len() > RECENT_EVENTS {
            inner.recent.pop_front();
        }
        drop(inner);
        // Serialised only when a page listens.
        if self.stream.receiver_count() > 0
            && let Ok(json) = serde_json::to_string(&*numbered)
        {
            let _ = self.stream.send((seq, json.into()));
        }
    }

    /// A probe of `service` was launched at `now`.
    pub(crate) fn probe_launched(&self, service: &str, kind: ProbeKind, now: Instant) {
        let mut inner = self.lock();
        let counters = inner.services.entry(service.to_owned()).or_default();
        counters.launched[kind as usize] = Some(now);
    }

    /// A probe of `service` finished at `now`; its duration counts from its launch.
    pub(crate) fn probe_finished(
        &self,
        service: &str,
        kind: ProbeKind,
        success: bool,
        now: Instant,
    ) {
        let mut inner = self.lock();
        let counters = inner.services.entry(service.to_owned()).or_default();
        let took = counters.launched[kind as usize]
            .take()
            .map_or(Duration::ZERO, |launched| {
                now.saturating_duration_since(launched)
            });
        let result = Some(ProbeResult { success, took });
        match kind {
            ProbeKind::Ready => counters.ready_probe = result,
            ProbeKind::Liveness => counters.liveness_probe = result,
        }
    }

    /// Counts a datagram on the notify socket; `accepted` when it came from a service's tree.
    pub(crate) fn notify_datagram(&self, accepted: bool) {
        self.notify_received.fetch_add(1, Ordering::Relaxed);
        if !accepted {
            self.notify_rejected.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Datagrams received and rejected so far.
    pub(crate) fn notify_counts(&self) -> (u64, u64) {
        (
            self.notify_received.load(Ordering::Relaxed),
            self.notify_rejected.load(Ordering::Relaxed),
        )
    }

    /// New events as JSON with their sequence numbers, from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<(u64, Arc<str>)> {
        self.stream.subscribe()
    }
}

/// The id of an incident: its report's file name without the extension. Only plain names are
/// ids, so an id can never point outside the incident directory.
pub(crate) fn incident_id(path: &str) -> Option<String> {
    let stem = std::path::Path::new(path).file_stem()?.to_str()?;
    is_incident_id(stem).then(|| stem.to_owned())
}

/// Whether `id` is a plain file stem: letters, digits, `-`, `_`, `.`, not starting with a dot.
pub(crate) fn is_incident_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangwatch_protocol::report::IncidentRecord;

    fn record(service: &str, event: Event) -> EventRecord {
        EventRecord {
            at: "2026-01-01T00:00:00.000Z".to_owned(),
            service: Some(service.to_owned()),
            event,
        }
    }

    #[test]
    fn events_become_counters() {
        let t = Telemetry::new();
        let stall = Event::Stalled {
            source: StallSource::Output,
            bound_ms: 100,
            late_ms: 0.0,
            detail: None,
        };
        t.observe(&record("a", stall.clone()));
        t.observe(&record("a", stall));
        t.observe(&record(
            "a",
            Event::Incident(IncidentRecord {
                text_path: Some("/s/incidents/a-20260101.txt".to_owned()),
                json_path: Some("/s/incidents/a-20260101.json".to_owned()),
                verdict: vec!["deadlock".to_owned()],
                took_ms: 1.0,
                error: None,
                degraded: Vec::new(),
            }),
        ));
        t.observe(&record(
            "b",
            Event::Restarting {
                in_ms: 1,
                attempt: 1,
                reason: "exited".to_owned(),
            },
        ));
        let inner = t.lock();
        let a = &inner.services["a"];
        assert_eq!(a.stalls[2], 2, "output is the third source");
        assert_eq!(a.stalls.iter().sum::<u64>(), 2);
        assert_eq!(a.incidents, 1);
        assert_eq!(inner.services["b"].restarts, 1);
        assert_eq!(inner.incidents[0].id.as_deref(), Some("a-20260101"));
        assert_eq!(inner.recent.len(), 4);
        assert_eq!(inner.recent[3].seq, 3);
    }

    #[test]
    fn the_recent_events_are_bounded() {
        let t = Telemetry::new();
        for _ in 0..RECENT_EVENTS + 5 {
            t.observe(&record(
                "a",
                Event::Requested {
                    request: "stop".to_owned(),
                },
            ));
        }
        let inner = t.lock();
        assert_eq!(inner.recent.len(), RECENT_EVENTS);
        assert_eq!(inner.recent[0].seq, 5);
    }

    #[test]
    fn incident_ids_stay_in_their_directory() {
        assert_eq!(incident_id("/x/web-1.json").as_deref(), Some("web-1"));
        assert!(!is_incident_id("../etc/passwd"));
        assert!(!is_incident_id(".hidden"));
        assert!(!is_incident_id("a/b"));
        assert!(!is_incident_id(""));
    }
}
