//! `status`: every service's state, or one service's with its tree's memory.

use hangwatch_protocol::control::{Heartbeat, Reply, ServiceStatus, Status};
use hangwatch_protocol::report::StallSource;
use tokio::time::Instant;

use super::super::Supervisor;
use super::super::service::millis;
use super::super::state::Life;

impl Supervisor {
    pub(in crate::up) fn status_reply(&mut self, only: Option<&str>, now: Instant) -> Reply {
        let indices: Vec<usize> = match only {
            Some(name) => match self.find(name) {
                Ok(i) => vec![i],
                Err(answer) => return Reply::Error(answer),
            },
            None => (0..self.services.len())
                .filter(|&i| !matches!(self.services[i].life, Life::Removed))
                .collect(),
        };
        // The tree's memory needs a scan of /proc (~25 µs a process): worth it for one
        // service, not for a listing that must stay fast with hundreds.
        let with_rss = only.is_some();
        let services = indices
            .iter()
            .map(|&i| {
                let mut status = self.service_status(i, now);
                if with_rss {
                    status.rss_bytes = self.tree_rss_of(i);
                }
                status
            })
            .collect();
        Reply::Status(Status {
            pid: self.own_pid,
            uptime_ms: millis(now.saturating_duration_since(self.began)),
            config: self.config.path.clone(),
            state_dir: self.state.path().to_path_buf(),
            shutting_down: self.shutdown.as_ref().map(|s| s.reason.clone()),
            notify: self.notify_counts,
            services,
        })
    }

    /// The resident memory of service `i`'s whole tree, when it runs.
    pub(in crate::up) fn tree_rss_of(&mut self, i: usize) -> Option<u64> {
        let scope = self.services[i].life.live_main()?.scope(self.own_pid);
        self.table()
            .ok()
            .map(|table| super::super::records::tree_rss(&scope, table))
    }

    pub(in crate::up) fn service_status(&mut self, i: usize, now: Instant) -> ServiceStatus {
        let svc = &self.services[i];
        let running = svc.life.live_main();
        let heartbeat = svc
            .life
            .watch()
            .and_then(|w| w.detector.as_ref())
            .and_then(|d| d.closest(now))
            .map(|(source, age, bound)| Heartbeat {
                source: heartbeat_word(source).to_owned(),
                age_ms: millis(age),
                deadline_ms: millis(bound),
            });
        ServiceStatus {
            name: svc.cfg.name.clone(),
            state: svc.life.shown(),
            pid: running.map(|m| m.id.pid),
            uptime_ms: running.map(|m| millis(now.saturating_duration_since(m.started))),
            restarts: svc.restarts.total,
            last_exit: svc.last_exit.clone(),
            heartbeat,
            restart_in_ms: match svc.life {
                Life::Backoff { until } => Some(millis(until.saturating_duration_since(now))),
                _ => None,
            },
            last_incident: svc.last_incident.clone(),
            status_text: svc.status_text().map(str::to_owned),
            rss_bytes: None,
        }
    }
}

fn heartbeat_word(source: StallSource) -> &'static str {
    match source {
        StallSource::Notify => "watchdog",
        StallSource::File => "heartbeat-file",
        StallSource::Output => "output",
        other => other.as_str(),
    }
}
