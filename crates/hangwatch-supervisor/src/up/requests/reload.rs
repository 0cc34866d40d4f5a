//! `reload` (and SIGHUP): read the config again and apply the difference.

use std::collections::HashMap;

use hangwatch_config::{Config, ConfigError};
use hangwatch_protocol::control::{ErrorKind, ErrorReply, ReloadReport, Reply};
use hangwatch_protocol::event::Event;
use tokio::time::Instant;

use super::super::Supervisor;
use super::super::machine;
use super::super::service::Svc;
use super::super::state::{Life, Then};
use super::error;

impl Supervisor {
    pub(in crate::up) fn reload_on_hangup(&mut self) {
        if let Reply::Error(err) = self.reload() {
            let mut text = format!("SIGHUP: reload refused: {}", err.message);
            for line in &err.diagnostics {
                text.push_str("\n  ");
                text.push_str(line);
            }
            self.note(&text);
        }
    }

    /// Reads the config again and applies the difference: new services start, removed ones
    /// stop, changed ones restart with their new definition, the rest are untouched. A config
    /// that does not load changes nothing.
    pub(in crate::up) fn reload(&mut self) -> Reply {
        if let Some(shutdown) = &self.shutdown {
            let message = format!("shutting down ({})", shutdown.reason);
            return error(ErrorKind::ShuttingDown, message);
        }
        let config = match Config::load(&self.config.path) {
            Ok(config) => config,
            Err(err) => {
                let diagnostics = err.diagnostics().iter().map(|d| d.to_string()).collect();
                let message = match &err {
                    ConfigError::Invalid(_) => format!(
                        "{} is not valid; nothing changed",
                        self.config.path.display()
                    ),
                    other => format!("{other}; nothing changed"),
                };
                return Reply::Error(ErrorReply {
                    kind: ErrorKind::Config,
                    message,
                    diagnostics,
                });
            }
        };
        let mut report = ReloadReport::default();
        for (key, changed) in [
            ("state_dir", config.state_dir != self.config.state_dir),
            (
                "events_max_size",
                config.events_max_size != self.config.events_max_size,
            ),
            ("events_keep", config.events_keep != self.config.events_keep),
            ("http", config.http != self.config.http),
            ("alert", config.alerts != self.config.alerts),
        ] {
            if changed {
                report.not_applied.push(key.to_owned());
            }
        }
        let wanted: HashMap<&str, &hangwatch_config::Service> = config
            .services
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        // Removed.
        for i in 0..self.services.len() {
            let svc = &self.services[i];
            if matches!(svc.life, Life::Removed) || wanted.contains_key(svc.cfg.name.as_str()) {
                continue;
            }
            report.removed.push(svc.cfg.name.clone());
            self.retire(i, Then::Remove, None);
        }
        // Changed, unchanged, added.
        let logs_dir = self.state.logs_dir();
        for cfg in &config.services {
            let existing = self.services.iter().position(|s| s.cfg.name == cfg.name);
            match existing {
                Some(i) if matches!(self.services[i].life, Life::Removed) => {
                    report.added.push(cfg.name.clone());
                    self.services[i].redefine(cfg.clone(), &logs_dir);
                    self.services[i].life = Life::Waiting;
                }
                Some(i)
                    if self.services[i].cfg == *cfg
                        && self.services[i]
                            .life
                            .stop()
                            .is_none_or(|s| s.pending.is_none()) =>
                {
                    report.unchanged.push(cfg.name.clone());
                }
                Some(i) => {
                    report.changed.push(cfg.name.clone());
                    let running = self.services[i].life.running();
                    self.retire(i, Then::Wait, Some(Box::new(cfg.clone())));
                    if running {
                        self.restart_dependents(i, Instant::now());
                    } else if !matches!(self.services[i].life, Life::Held) {
                        self.services[i].life = Life::Waiting;
                    }
                }
                None => {
                    report.added.push(cfg.name.clone());
                    let names = HashMap::new();
                    self.services.push(Svc::new(cfg.clone(), &logs_dir, &names));
                }
            }
        }
        self.config.shutdown_timeout = config.shutdown_timeout;
        self.config.services = config.services;
        self.relink();
        self.emit(
            None,
            Event::Reloaded {
                added: report.added.clone(),
                removed: report.removed.clone(),
                changed: report.changed.clone(),
            },
        );
        Reply::Reloaded(report)
    }

    /// Stops service `i` for a reload, redirects its stop under way, or (when nothing runs)
    /// applies `pending` at once.
    pub(in crate::up) fn retire(
        &mut self,
        i: usize,
        then: Then,
        pending: Option<Box<hangwatch_config::Service>>,
    ) {
        let now = Instant::now();
        let (effects, left) = machine::retire(&mut self.services[i].life, then, pending, now);
        if let Some(cfg) = left {
            let logs_dir = self.state.logs_dir();
            self.services[i].redefine(*cfg, &logs_dir);
        }
        self.perform(i, effects, now);
    }

    /// Recomputes every service's dependencies by name (after a reload).
    pub(in crate::up) fn relink(&mut self) {
        let names: HashMap<String, usize> = self
            .services
            .iter()
            .enumerate()
            .filter(|(_, s)| !matches!(s.life, Life::Removed))
            .map(|(i, s)| (s.cfg.name.clone(), i))
            .collect();
        for svc in &mut self.services {
            let cfg = svc
                .life
                .stop()
                .and_then(|s| s.pending.as_deref())
                .unwrap_or(&svc.cfg);
            svc.deps = cfg
                .depends_on
                .iter()
                .filter_map(|d| names.get(d).copied())
                .collect();
        }
    }
}
