//! `/metrics`: the Prometheus text exposition format (version 0.0.4).
//!
//! Names follow the exporters people already run next to hangwatch: `node_exporter`'s systemd
//! collector (`…_state{state=…}` one-hot, `…_start_time_seconds`, `…_restarts_total`),
//! `process-exporter` (`…_memory_bytes`, `…_cpu_seconds_total`) and the blackbox exporter
//! (`probe_success`, `probe_duration_seconds`). Base units, `_total` on counters, `HELP` and
//! `TYPE` before each family.
//!
//! Written by hand rather than with `prometheus-client`: every series is a snapshot of one
//! status reply taken at scrape time, not an instrument updated in place, so a registry would
//! only be filled to be emptied again; the format is a few lines of text and `promtool check
//! metrics` (in the tests) holds this writer to it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use hangwatch_protocol::control::{State, Status};

use super::telemetry::{Counters, ProbeResult, STALL_SOURCES};

/// Every state word, for the one-hot `hangwatch_service_state`.
const STATES: [State; 9] = [
    State::Waiting,
    State::Starting,
    State::Ready,
    State::Backoff,
    State::Diagnosing,
    State::Stopping,
    State::Exited,
    State::Failed,
    State::Stopped,
];

/// What `/proc` says about one service's tree at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Resources {
    pub(crate) memory_bytes: u64,
    pub(crate) cpu_seconds: f64,
    pub(crate) processes: u64,
}

/// Everything one scrape shows.
pub(crate) struct Snapshot<'a> {
    pub(crate) status: &'a Status,
    pub(crate) counters: &'a HashMap<String, Counters>,
    pub(crate) resources: &'a HashMap<String, Resources>,
    /// How long the loop took to answer this scrape's status request.
    pub(crate) loop_lag: Duration,
    pub(crate) notify_received: u64,
    pub(crate) notify_rejected: u64,
    /// The time of the status reply, as Unix seconds.
    pub(crate) now_unix: f64,
}

/// The exposition of `snapshot`.
pub(crate) fn render(snapshot: &Snapshot<'_>) -> String {
    let services = &snapshot.status.services;
    let mut out = String::with_capacity(512 + services.len() * 2048);
    let none = Counters::default();
    let counters = |name: &str| snapshot.counters.get(name).unwrap_or(&none);

    family(
        &mut out,
        "hangwatch_build_info",
        "gauge",
        "hangwatch's version; always 1.",
    );
    let _ = writeln!(
        out,
        "hangwatch_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    family(
        &mut out,
        "hangwatch_event_loop_lag_seconds",
        "gauge",
        "Time the supervisor's event loop took to answer this scrape's status request.",
    );
    let _ = writeln!(
        out,
        "hangwatch_event_loop_lag_seconds {}",
        snapshot.loop_lag.as_secs_f64()
    );
    family(
        &mut out,
        "hangwatch_notify_datagrams_received_total",
        "counter",
        "Datagrams received on the notify socket.",
    );
    let _ = writeln!(
        out,
        "hangwatch_notify_datagrams_received_total {}",
        snapshot.notify_received
    );
    family(
        &mut out,
        "hangwatch_notify_datagrams_rejected_total",
        "counter",
        "Notify datagrams ignored: no sender credentials, or a sender outside every service.",
    );
    let _ = writeln!(
        out,
        "hangwatch_notify_datagrams_rejected_total {}",
        snapshot.notify_rejected
    );
    family(
        &mut out,
        "hangwatch_start_time_seconds",
        "gauge",
        "When the supervisor started, as Unix seconds.",
    );
    let _ = writeln!(
        out,
        "hangwatch_start_time_seconds {}",
        snapshot.now_unix - ms_to_s(snapshot.status.uptime_ms)
    );

    family(
        &mut out,
        "hangwatch_service_up",
        "gauge",
        "1 while the service's program runs.",
    );
    for s in services {
        let _ = writeln!(
            out,
            "hangwatch_service_up{{service=\"{}\"}} {}",
            Escaped(&s.name),
            u8::from(s.pid.is_some())
        );
    }
    family(
        &mut out,
        "hangwatch_service_state",
        "gauge",
        "The service's state: 1 for the current one, 0 for the others.",
    );
    for s in services {
        for state in STATES {
            let _ = writeln!(
                out,
                "hangwatch_service_state{{service=\"{}\",state=\"{}\"}} {}",
                Escaped(&s.name),
                state.as_str(),
                u8::from(s.state == state)
            );
        }
    }
    family(
        &mut out,
        "hangwatch_service_restarts_total",
        "counter",
        "Restarts scheduled since hangwatch started.",
    );
    for s in services {
        let _ = writeln!(
            out,
            "hangwatch_service_restarts_total{{service=\"{}\"}} {}",
            Escaped(&s.name),
            counters(&s.name).restarts
        );
    }
    family(
        &mut out,
        "hangwatch_service_oom_kills_total",
        "counter",
        "The service's program killed by the kernel's OOM killer (as the kernel log says), \
         since hangwatch started.",
    );
    for s in services {
        let _ = writeln!(
            out,
            "hangwatch_service_oom_kills_total{{service=\"{}\"}} {}",
            Escaped(&s.name),
            counters(&s.name).oom_kills
        );
    }
    family(
        &mut out,
        "hangwatch_service_stalls_total",
        "counter",
        "Stalls detected, by the liveness source that missed its deadline.",
    );
    for s in services {
        let c = counters(&s.name);
        for (source, count) in STALL_SOURCES.iter().zip(c.stalls) {
            let _ = writeln!(
                out,
                "hangwatch_service_stalls_total{{service=\"{}\",source=\"{}\"}} {count}",
                Escaped(&s.name),
                source.as_str()
            );
        }
    }
    family(
        &mut out,
        "hangwatch_service_incidents_total",
        "counter",
        "Incident reports (diagnoses) written.",
    );
    for s in services {
        let _ = writeln!(
            out,
            "hangwatch_service_incidents_total{{service=\"{}\"}} {}",
            Escaped(&s.name),
            counters(&s.name).incidents
        );
    }
    family(
        &mut out,
        "hangwatch_service_leaks_total",
        "counter",
        "Things the service's tree left behind: leftover processes, and shared-memory or IPC objects.",
    );
    for s in services {
        let c = counters(&s.name);
        for (kind, count) in [
            ("process", c.leaked_processes),
            ("object", c.leaked_objects),
        ] {
            let _ = writeln!(
                out,
                "hangwatch_service_leaks_total{{service=\"{}\",kind=\"{kind}\"}} {count}",
                Escaped(&s.name)
            );
        }
    }
    family(
        &mut out,
        "hangwatch_service_last_exit_code",
        "gauge",
        "Exit code of the service's previous program (absent when it died of a signal or never ended).",
    );
    for s in services {
        if let Some(code) = s.last_exit.as_ref().and_then(|e| e.code) {
            let _ = writeln!(
                out,
                "hangwatch_service_last_exit_code{{service=\"{}\"}} {code}",
                Escaped(&s.name)
            );
        }
    }
    family(
        &mut out,
        "hangwatch_service_start_time_seconds",
        "gauge",
        "When the service's running program started, as Unix seconds.",
    );
    for s in services {
        if let Some(uptime) = s.uptime_ms {
            let _ = writeln!(
                out,
                "hangwatch_service_start_time_seconds{{service=\"{}\"}} {}",
                Escaped(&s.name),
                snapshot.now_unix - ms_to_s(uptime)
            );
        }
    }
    family(
        &mut out,
        "hangwatch_service_last_heartbeat_time_seconds",
        "gauge",
        "Last sign of life of the liveness source closest to its deadline, as Unix seconds.",
    );
    for s in services {
        if let Some(heartbeat) = &s.heartbeat {
            let _ = writeln!(
                out,
                "hangwatch_service_last_heartbeat_time_seconds{{service=\"{}\",source=\"{}\"}} {}",
                Escaped(&s.name),
                Escaped(&heartbeat.source),
                snapshot.now_unix - ms_to_s(heartbeat.age_ms)
            );
        }
    }
    family(
        &mut out,
        "hangwatch_service_heartbeat_deadline_seconds",
        "gauge",
        "The bound of that liveness source: a stall is declared when the heartbeat is older.",
    );
    for s in services {
        if let Some(heartbeat) = &s.heartbeat {
            let _ = writeln!(
                out,
                "hangwatch_service_heartbeat_deadline_seconds{{service=\"{}\",source=\"{}\"}} {}",
                Escaped(&s.name),
                Escaped(&heartbeat.source),
                ms_to_s(heartbeat.deadline_ms)
            );
        }
    }
    resource_families(&mut out, snapshot);
    probe_families(&mut out, snapshot);
    out
}

fn resource_families(out: &mut String, snapshot: &Snapshot<'_>) {
    let running = || {
        snapshot
            .status
            .services
            .iter()
            .filter_map(|s| snapshot.resources.get(&s.name).map(|r| (&s.name, r)))
    };
    family(
        out,
        "hangwatch_service_memory_bytes",
        "gauge",
        "Resident memory of the service's process tree.",
    );
    for (name, r) in running() {
        let _ = writeln!(
            out,
            "hangwatch_service_memory_bytes{{service=\"{}\"}} {}",
            Escaped(name),
            r.memory_bytes
        );
    }
    family(
        out,
        "hangwatch_service_cpu_seconds_total",
        "counter",
        "CPU time (user and system) used by the processes of the service's tree alive now.",
    );
    for (name, r) in running() {
        let _ = writeln!(
            out,
            "hangwatch_service_cpu_seconds_total{{service=\"{}\"}} {}",
            Escaped(name),
            r.cpu_seconds
        );
    }
    family(
        out,
        "hangwatch_service_processes",
        "gauge",
        "Processes in the service's tree.",
    );
    for (name, r) in running() {
        let _ = writeln!(
            out,
            "hangwatch_service_processes{{service=\"{}\"}} {}",
            Escaped(name),
            r.processes
        );
    }
}

fn probe_families(out: &mut String, snapshot: &Snapshot<'_>) {
    let probes = || {
        snapshot.status.services.iter().flat_map(|s| {
            let c = snapshot.counters.get(&s.name);
            let ready = c.and_then(|c| c.ready_probe).map(|r| ("ready", r));
            let live = c.and_then(|c| c.liveness_probe).map(|r| ("liveness", r));
            ready
                .into_iter()
                .chain(live)
                .map(move |(kind, r): (&str, ProbeResult)| (&s.name, kind, r))
        })
    };
    family(
        out,
        "hangwatch_probe_success",
        "gauge",
        "Whether the last run of the probe succeeded.",
    );
    for (name, kind, r) in probes() {
        let _ = writeln!(
            out,
            "hangwatch_probe_success{{service=\"{}\",probe=\"{kind}\"}} {}",
            Escaped(name),
            u8::from(r.success)
        );
    }
    family(
        out,
        "hangwatch_probe_duration_seconds",
        "gauge",
        "How long the last run of the probe took.",
    );
    for (name, kind, r) in probes() {
        let _ = writeln!(
            out,
            "hangwatch_probe_duration_seconds{{service=\"{}\",probe=\"{kind}\"}} {}",
            Escaped(name),
            r.took.as_secs_f64()
        );
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn ms_to_s(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// A label value with `\`, `"` and newlines escaped, as the text format requires.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0;
        if !text.contains(['\\', '"', '\n']) {
            return f.write_str(text);
        }
        for c in text.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use hangwatch_protocol::control::{LastExit, ServiceStatus};

    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(Escaped("a\"b\\c\nd").to_string(), "a\\\"b\\\\c\\nd");
        assert_eq!(Escaped("plain").to_string(), "plain");
    }

    #[test]
    fn every_service_has_its_series_and_every_family_its_help() {
        let service = ServiceStatus {
            name: "web".to_owned(),
            state: State::Ready,
            pid: Some(42),
            uptime_ms: Some(2000),
            restarts: 0,
            last_exit: Some(LastExit {
                status: "code 3".to_owned(),
                code: Some(3),
                reason: "exited".to_owned(),
                at_unix_ms: 0,
            }),
            heartbeat: None,
            restart_in_ms: None,
            last_incident: None,
            status_text: None,
            rss_bytes: None,
        };
        let status = Status {
            pid: 1,
            uptime_ms: 5000,
            config: PathBuf::from("/c"),
            state_dir: PathBuf::from("/s"),
            shutting_down: None,
            notify: Default::default(),
            services: vec![service],
        };
        let resources = HashMap::from([(
            "web".to_owned(),
            Resources {
                memory_bytes: 4096,
                cpu_seconds: 0.5,
                processes: 2,
            },
        )]);
        let text = render(&Snapshot {
            status: &status,
            counters: &HashMap::new(),
            resources: &resources,
            loop_lag: Duration::from_micros(150),
            notify_received: 3,
            notify_rejected: 1,
            now_unix: 100.0,
        });
        for line in [
            "hangwatch_service_up{service=\"web\"} 1",
            "hangwatch_service_state{service=\"web\",state=\"ready\"} 1",
            "hangwatch_service_state{service=\"web\",state=\"failed\"} 0",
            "hangwatch_service_stalls_total{service=\"web\",source=\"notify\"} 0",
            "hangwatch_service_last_exit_code{service=\"web\"} 3",
            "hangwatch_service_start_time_seconds{service=\"web\"} 98",
            "hangwatch_service_memory_bytes{service=\"web\"} 4096",
            "hangwatch_service_processes{service=\"web\"} 2",
            "hangwatch_notify_datagrams_rejected_total 1",
            "hangwatch_start_time_seconds 95",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps);
        for line in text.lines().filter(|l| l.contains(" counter")) {
            if let Some(name) = line.strip_prefix("# TYPE ") {
                assert!(
                    name.split(' ')
                        .next()
                        .is_some_and(|n| n.ends_with("_total")),
                    "{line}"
                );
            }
        }
    }
}
