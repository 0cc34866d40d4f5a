//! `diagnose NAME`: a diagnosis of a running service, without stopping it.

use std::path::PathBuf;
use std::time::Duration;

use hangwatch_protocol::control::{Diagnosis, ErrorKind, Reply};
use hangwatch_protocol::event::Event;
use hangwatch_protocol::report::IncidentRecord;
use tokio::sync::oneshot;

use super::super::{Msg, Supervisor};
use super::error;
use crate::incident::Subject;

impl Supervisor {
    pub(in crate::up) fn diagnose_request(
        &mut self,
        name: &str,
        sample_ms: Option<u64>,
        reply: oneshot::Sender<Reply>,
    ) -> Option<(oneshot::Sender<Reply>, Reply)> {
        let i = match self.find(name) {
            Ok(i) => i,
            Err(answer) => return Some((reply, Reply::Error(answer))),
        };
        let svc = &self.services[i];
        let Some(main) = svc.life.live_main() else {
            let message = format!(
                "{name} is not running (it is {})",
                svc.life.shown().as_str()
            );
            return Some((reply, error(ErrorKind::Failed, message)));
        };
        let pid = main.id.pid;
        let mut spec = self.diagnose.clone();
        if let Some(sample_ms) = sample_ms {
            spec.sample = Duration::from_millis(sample_ms.min(60_000));
        }
        let reason = format!(
            "{name}-{}",
            hangwatch_protocol::report::IncidentWhy::Requested.as_str()
        );
        let additions = crate::incident::Additions {
            output: self.services[i].tail.last(),
            ..crate::incident::Additions::default()
        };
        let tx = self.tx.clone();
        self.emit(
            Some(i),
            Event::Requested {
                request: "diagnose".to_owned(),
            },
        );
        tokio::spawn(async move {
            let record =
                crate::incident::bounded(spec, Subject::Tree { program: pid }, reason, additions)
                    .await;
            let _ = tx
                .send(Msg::Inspected {
                    service: i,
                    record,
                    reply,
                })
                .await;
        });
        None
    }

    pub(in crate::up) fn on_inspected(
        &mut self,
        i: usize,
        record: IncidentRecord,
        reply: oneshot::Sender<Reply>,
    ) {
        if let Some(path) = &record.text_path {
            self.services[i].last_incident = Some(PathBuf::from(path));
        }
        self.emit(Some(i), Event::Incident(record.clone()));
        let answer = match (&record.error, &record.text_path) {
            (Some(err), None) => error(ErrorKind::Failed, err.clone()),
            (_, path) => {
                let text = path
                    .as_ref()
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .unwrap_or_else(|| record.verdict.join("\n"));
                Reply::Diagnosis(Diagnosis {
                    service: self.services[i].cfg.name.clone(),
                    incident: record,
                    text,
                })
            }
        };
        let _ = reply.send(answer);
    }
}
