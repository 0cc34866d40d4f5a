//! The supervisor's events in words: one line each, as the console of `hangwatch up` and
//! `hangwatch events` print them.

use hangwatch_protocol::event::{Event, EventRecord};
use hangwatch_protocol::report::ProgramStatus;

/// An event in words, as the console of `up` and `hangwatch events` print it; `None` for those
/// not worth a line on the console.
#[must_use]
pub fn describe(record: &EventRecord) -> Option<String> {
    let name = record.service.as_deref().unwrap_or("hangwatch");
    Some(match &record.event {
        Event::Up {
            config, services, ..
        } => {
            format!("supervising {services} services of {config}")
        }
        Event::Degraded { part, note } => format!("{name}: {part} degraded: {note}"),
        Event::Orphans { killed } => format!(
            "killed {} processes left by an earlier hangwatch of this state directory",
            killed.len()
        ),
        Event::Started { pid, restarts } if *restarts == 0 => format!("{name} started (pid {pid})"),
        Event::Started { pid, .. } => format!("{name} restarted (pid {pid})"),
        Event::StartFailed { error } => format!("{name} could not start: {error}"),
        Event::Ready { after_ms, by } if by != "started" => {
            format!("{name} ready after {} ({by})", seconds(*after_ms))
        }
        Event::Ready { .. } => return None,
        Event::NotReady { within_ms, error } => format!(
            "{name} not ready within {}: {error}",
            seconds(*within_ms as f64)
        ),
        Event::Stalled {
            source,
            bound_ms,
            detail,
            ..
        } => {
            let what = crate::summary::stall_words(*source, *bound_ms);
            match detail {
                Some(detail) => format!("{name} STALLED: {what} ({detail})"),
                None => format!("{name} STALLED: {what}"),
            }
        }
        Event::StallWarning {
            source, bound_ms, ..
        } => format!(
            "{name} late: {} (warning; it keeps running)",
            crate::summary::stall_words(*source, *bound_ms)
        ),
        Event::StallDeferred {
            source,
            cpu_pct,
            memory_pct,
            above_pct,
            up_to_ms,
        } => {
            let mut pressure = Vec::new();
            if let Some(cpu) = cpu_pct {
                pressure.push(format!("CPU {cpu:.0} %"));
            }
            if let Some(memory) = memory_pct {
                pressure.push(format!("memory {memory:.0} %"));
            }
            format!(
                "{name}: no {} by its deadline, and the host is under pressure ({} over 10 s, \
                 threshold {above_pct:.0} %): the stop waits up to {}",
                crate::summary::beat_word(*source),
                pressure.join(", "),
                seconds(*up_to_ms as f64)
            )
        }
        Event::StallCleared {
            source,
            deferred_ms,
        } => format!(
            "{name}: {} came {} after its deadline, during the pressure: no stop",
            crate::summary::beat_word(*source),
            seconds(*deferred_ms)
        ),
        Event::Killing {
            grace_ms,
            survivors,
            ..
        } => {
            let mut text = format!(
                "{name}: KILL after the {} grace for {}",
                seconds(*grace_ms as f64),
                if survivors.len() == 1 {
                    "1 process".to_owned()
                } else {
                    format!("{} processes", survivors.len())
                }
            );
            for survivor in survivors {
                text.push_str(&format!("\n  {}", crate::survivors::sentence(survivor)));
            }
            text
        }
        Event::OverMemory {
            rss_bytes,
            limit_bytes,
        } => format!(
            "{name} over its memory limit: {} MiB > {} MiB",
            rss_bytes / (1 << 20),
            limit_bytes / (1 << 20)
        ),
        Event::Incident(incident) => {
            let mut text = format!("{name} diagnosed");
            if let Some(verdict) = incident.verdict.first() {
                text.push_str(&format!(": {verdict}"));
            }
            if let Some(path) = &incident.text_path {
                text.push_str(&format!("\n  incident: {path}"));
            }
            if let Some(error) = &incident.error {
                text.push_str(&format!(" ({error})"));
            }
            text
        }
        Event::Stopping {
            cause,
            signal,
            grace_ms,
        } => format!(
            "stopping {name} ({cause}): {signal}, KILL after {}",
            seconds(*grace_ms as f64)
        ),
        Event::StopFailed {
            cause,
            error,
            retry_in_ms,
        } => format!(
            "cannot stop {name} ({cause}): {error}; trying again in {}",
            seconds(*retry_in_ms as f64)
        ),
        Event::Exited {
            status,
            stopped,
            killed,
            uptime_ms,
            oom,
            ..
        } => {
            let how = match status {
                _ if oom.is_some() => oom.as_ref().map(crate::oom::words).unwrap_or_default(),
                ProgramStatus::Exited { code } => format!("exited with code {code}"),
                ProgramStatus::Signalled { name: signal, .. } => format!("killed by {signal}"),
                _ => "ended".to_owned(),
            };
            let mut text = format!("{name} {how} after running {}", seconds(*uptime_ms));
            if *stopped && !killed.is_empty() {
                text.push_str(&format!(" ({} processes had to be killed)", killed.len()));
            }
            text
        }
        Event::Restarting {
            in_ms,
            attempt,
            reason,
        } => format!(
            "restarting {name} in {} ({reason}, restart {attempt})",
            seconds(*in_ms as f64)
        ),
        Event::GaveUp {
            restarts,
            within_ms,
            action,
        } => format!(
            "{name} FAILED: {restarts} restarts within {}; giving up ({action})",
            seconds(*within_ms as f64)
        ),
        Event::Leak { leftovers, objects } => {
            let mut parts = Vec::new();
            if !leftovers.is_empty() {
                parts.push(format!("{} leftover processes stopped", leftovers.len()));
            }
            if !objects.is_empty() {
                parts.push(format!("objects left: {}", objects.join(", ")));
            }
            format!("{name}: {}", parts.join("; "))
        }
        Event::LogDropped { lines, error } => {
            format!("{name}: {lines} output lines dropped ({error})")
        }
        Event::Requested { request } => format!("{name}: {request} requested"),
        Event::AlertFailed {
            alert,
            on,
            why,
            detail,
        } => format!("{name}: alert {alert} on {on} {why}: {detail}"),
        Event::Reloaded {
            added,
            removed,
            changed,
        } => {
            let mut parts = Vec::new();
            for (what, names) in [("added", added), ("removed", removed), ("changed", changed)] {
                if !names.is_empty() {
                    parts.push(format!("{what} {}", names.join(", ")));
                }
            }
            if parts.is_empty() {
                "config reloaded: nothing changed".to_owned()
            } else {
                format!("config reloaded: {}", parts.join("; "))
            }
        }
        Event::ShuttingDown { reason, timeout_ms } => format!(
            "shutting down ({reason}), at most {}",
            seconds(*timeout_ms as f64)
        ),
        Event::Down {
            took_ms,
            clean,
            killed,
            ..
        } => {
            let mut text = format!("down in {}", seconds(*took_ms));
            if !clean.is_empty() {
                text.push_str(&format!("; stopped cleanly: {}", clean.join(", ")));
            }
            if !killed.is_empty() {
                text.push_str(&format!("; had to be killed: {}", killed.join(", ")));
            }
            text
        }
        _ => return None,
    })
}

fn seconds(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.1}s", ms / 1000.0)
    }
}
