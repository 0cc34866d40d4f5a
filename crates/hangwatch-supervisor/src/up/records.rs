//! What the supervisor writes down: the event log and the console, the instance record, the
//! scan of its subtree in `/proc`, and the leak audits of services that ended.

use std::io;
use std::time::Duration;

use hangwatch_leaks::{Part, PartFound};
use hangwatch_process::Scope;
use hangwatch_process::tree::ProcessTable;
use hangwatch_protocol::event::Event;
use hangwatch_protocol::report::IncidentRecord;

use super::describe::describe;
use super::{Msg, Supervisor, UpError, View, io_err};
use crate::state::{InstanceRecord, record};

impl Supervisor {
    /// The processes below hangwatch, read once per wake-up. Only hangwatch's own subtree:
    /// as a subreaper it adopts every escapee, so every process of every service is in it, and
    /// the cost follows the services, not the machine.
    pub(super) fn table(&mut self) -> Result<&ProcessTable, UpError> {
        if self.table.is_none() {
            self.table =
                Some(ProcessTable::subtree(self.own_pid).map_err(io_err("scan processes"))?);
        }
        self.table
            .as_ref()
            .ok_or_else(|| io_err("scan processes")(io::Error::other("no scan")))
    }

    /// Emits service `i`'s incident, after a `degraded` event for each optional reading its
    /// diagnosis went without.
    pub(super) fn emit_incident(&self, i: usize, incident: IncidentRecord) {
        for degraded in &incident.degraded {
            self.emit(
                Some(i),
                Event::Degraded {
                    part: degraded.part.clone(),
                    note: degraded.note.clone(),
                },
            );
        }
        self.emit(Some(i), Event::Incident(incident));
    }

    pub(super) fn emit(&self, service: Option<usize>, event: Event) {
        let name = service.map(|i| self.services[i].cfg.name.as_str());
        let line = record(name, event);
        if let Some(telemetry) = &self.telemetry {
            telemetry.observe(&line);
        }
        if let Some(alerts) = &self.alerts {
            alerts.borrow_mut().offer(&line);
        }
        match self.events.append(&line) {
            Ok(()) => {
                if self.events_failing.replace(false) {
                    tracing::info!("the event log takes events again");
                }
            }
            // Said once, on the console (the log itself cannot take it), until a write works
            // again: a full disk must neither stop the services nor flood the console.
            Err(err) if !self.events_failing.replace(true) => {
                tracing::warn!(%err, "cannot append to the event log");
                let note = record(
                    None,
                    Event::Degraded {
                        part: "event-log".into(),
                        note: format!(
                            "cannot append to {}: {err}; events go to the console only, until it \
                             takes them again",
                            self.state.events_path().display()
                        ),
                    },
                );
                self.show(&note);
            }
            Err(_) => {}
        }
        self.show(&line);
    }

    /// Shows `record` on the console, as the view asks.
    fn show(&self, record: &hangwatch_protocol::event::EventRecord) {
        match self.view {
            View::Json { .. } => {
                if let (Some(console), Ok(line)) = (&self.console, serde_json::to_string(record)) {
                    console.raw(&line);
                }
            }
            View::Lines { .. } => {
                if let (Some(console), Some(text)) = (&self.console, describe(record)) {
                    console.event(&text);
                }
            }
            View::Quiet => {}
        }
    }

    pub(super) fn note(&self, text: &str) {
        if let Some(console) = self
            .console
            .as_ref()
            .filter(|_| !matches!(self.view, View::Json { .. }))
        {
            console.event(text);
        }
    }

    /// Kills what an earlier hangwatch of this state directory left running, and waits
    /// (briefly) for it to be gone, so that a new service does not find its port taken.
    pub(super) async fn kill_previous_instance(&mut self) {
        let previous = match InstanceRecord::read(&self.state.instance_path()) {
            Ok(Some(previous)) => previous,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(%err, "unreadable instance record of an earlier run");
                return;
            }
        };
        match crate::state::instance::find_survivors(&previous, self.own_pid) {
            Ok(ids) if !ids.is_empty() => {
                let killed = crate::state::instance::kill_survivors(&ids);
                let _ = crate::state::instance::wait_gone(&ids, Duration::from_secs(2)).await;
                self.emit(None, Event::Orphans { killed });
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "cannot look for survivors of an earlier run"),
        }
    }

    /// Hands the instance record to its background writer when it changed.
    pub(super) fn write_instance(&mut self) {
        if !std::mem::take(&mut self.instance_dirty) {
            return;
        }
        for svc in &self.services {
            match svc.life.main() {
                Some(main) => self.instance.set_group(&svc.cfg.name, main.id),
                None => self.instance.remove_group(&svc.cfg.name),
            }
        }
        if let Some(file) = &self.instance_file
            && let Err(err) = file.update(&self.instance)
        {
            tracing::warn!(%err, "cannot update the instance record");
        }
    }

    /// Audits what service `i`'s tree (`part`), gone, left behind in shared memory and SysV
    /// IPC: report only, each object once, attributed to the service when nothing but its tree
    /// held it (the rest waits for the final audit). Picking the candidates costs the loop
    /// a few microseconds (a read of `/proc/sysvipc/shm`, ~1 µs per segment on the machine);
    /// judging them searches every process on the machine for holders, so it runs on a
    /// blocking thread, only when there is a candidate, and reports back with [`Msg::Leaks`].
    pub(super) fn audit_leaks(&mut self, i: usize, part: &Part) {
        let Some(audit) = self.leaks.as_ref().and_then(|leaks| leaks.audit_part(part)) else {
            return;
        };
        self.leak_audits += 1;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let task = tokio::task::spawn_blocking(move || audit.run());
            let found = match tokio::time::timeout(LEAK_AUDIT_LIMIT, task).await {
                Ok(Ok(found)) => Some(found),
                Ok(Err(err)) => {
                    tracing::warn!(%err, "the leak audit of a service failed");
                    None
                }
                Err(_) => {
                    tracing::warn!("the leak audit of a service took too long and was abandoned");
                    None
                }
            };
            let _ = tx.send(Msg::Leaks { service: i, found }).await;
        });
    }

    pub(super) fn on_leaks(&mut self, i: usize, found: Option<PartFound>) {
        self.leak_audits = self.leak_audits.saturating_sub(1);
        let (Some(leaks), Some(found)) = (&self.leaks, found) else {
            return;
        };
        let report = leaks.reported(found);
        for error in &report.errors {
            tracing::warn!(service = %self.services[i].cfg.name, %error, "leak audit");
            if self.leak_errors_said.insert(error.clone()) {
                self.emit(
                    Some(i),
                    Event::Degraded {
                        part: "leak-audit".into(),
                        note: error.clone(),
                    },
                );
            }
        }
        tracing::debug!(
            service = %self.services[i].cfg.name,
            took_ms = report.audit_ms,
            objects = report.objects.len(),
            "leak audit of a stopped service"
        );
        if !report.objects.is_empty() {
            self.emit(
                Some(i),
                Event::Leak {
                    leftovers: Vec::new(),
                    objects: report.objects.into_iter().map(|o| o.name).collect(),
                },
            );
        }
    }
}

/// The longest a service's leak audit may take (a search of every process on the machine,
/// tens of milliseconds on a busy one) before its result is abandoned to the final audit.
const LEAK_AUDIT_LIMIT: Duration = Duration::from_secs(2);

/// Resident memory of the processes of `scope`, in bytes.
pub(super) fn tree_rss(scope: &Scope, table: &ProcessTable) -> u64 {
    let page = rustix::param::page_size() as u64;
    scope
        .pids(table)
        .into_iter()
        .filter_map(|pid| table.get(pid).map(|stat| stat.rss_pages))
        .sum::<u64>()
        * page
}
