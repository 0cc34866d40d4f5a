//! The run's notify socket: where it lives, what the program's environment says about it, and
//! what a datagram from the program's tree does (the meaning of each message is shared with
//! `up`, in [`crate::liveness::notified`]).

use std::time::SystemTime;

use hangwatch_process::ProgramCommand;
use hangwatch_protocol::report::{Degraded, NotifySummary};
use tokio::time::Instant;

use super::{NotifyMode, Run, RunError, io, millis};
use crate::liveness::detector::LivenessSpec;
use crate::liveness::notified;
use crate::liveness::notify::{Datagram, NotifySocket};

/// Creates the notify socket for a program of this hangwatch (`pid`). A path that cannot be had
/// falls back to an abstract socket, with a note.
pub(super) fn open_notify_socket(
    mode: NotifyMode,
    pid: i32,
    notes: &mut Vec<Degraded>,
) -> Result<Option<NotifySocket>, RunError> {
    let nonce = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    match mode {
        NotifyMode::Off => Ok(None),
        NotifyMode::Abstract => Ok(Some(NotifySocket::bind_abstract(&format!(
            "hangwatch/run/{pid}/{nonce:x}"
        ))?)),
        NotifyMode::Path => {
            let (socket, note) = NotifySocket::bind_in_runtime_dir_or_abstract(
                &format!("run-{pid}.notify"),
                &format!("run/{pid}/{nonce:x}"),
                false,
            )?;
            notes.extend(note);
            Ok(Some(socket))
        }
    }
}

/// Offers `socket` to the program in its environment (with the watchdog, if any), and returns
/// the summary its datagrams will fill in; `None` without a socket.
pub(super) fn offer(
    socket: Option<&NotifySocket>,
    liveness: &LivenessSpec,
    own_pid: i32,
    command: &mut ProgramCommand,
) -> Option<NotifySummary> {
    let socket = socket?;
    command
        .env
        .push(("NOTIFY_SOCKET".into(), socket.env_value()));
    // Says whose socket NOTIFY_SOCKET is, so that a client such as the pytest plugin
    // speaks only to hangwatch (`hangwatch up` says it with HANGWATCH_SERVICE), never to
    // systemd, whose watchdog it must not pet.
    command
        .env
        .push(("HANGWATCH_PID".into(), own_pid.to_string().into()));
    if let Some(watchdog) = liveness.watchdog {
        command.env.push((
            "WATCHDOG_USEC".into(),
            watchdog.as_micros().to_string().into(),
        ));
        command.pid_env = Some("WATCHDOG_PID".into());
    }
    Some(NotifySummary {
        socket: socket.env_value().to_string_lossy().into_owned(),
        watchdog_ms: liveness.watchdog.map(millis),
        ..NotifySummary::default()
    })
}

impl Run<'_> {
    /// Applies one datagram from the notify socket, if its sender belongs to the program's tree.
    pub(super) fn apply_datagram(
        &mut self,
        datagram: &Datagram,
        now: Instant,
    ) -> Result<(), RunError> {
        let Some(summary) = self.notify.as_mut() else {
            return Ok(());
        };
        let member = match datagram.sender_pid {
            // The program itself, not yet reaped: its PID cannot have been reused. This is the
            // common sender, checked without a system call.
            Some(pid) if pid == self.stopper.program => true,
            // A descendant of hangwatch is the program's: hangwatch runs nothing else.
            Some(pid) => hangwatch_process::tree::is_descendant(pid, self.stopper.own_pid)
                .map_err(io("check the sender of a notify datagram"))?,
            None => false,
        };
        if !member {
            tracing::debug!(sender = ?datagram.sender_pid, "notify datagram from outside the tree, ignored");
            summary.rejected += 1;
            return Ok(());
        }
        let at_ms = (now - self.started).as_secs_f64() * 1000.0;
        let asks = notified::apply(datagram, summary, Some(&mut self.detector), at_ms, now);
        if let Some(extra) = asks.extend
            && summary.stopping_at_ms.is_none()
            && let Some(at) = &mut self.deadline
        {
            // As systemd's RuntimeMaxSec=: the run may last at least `extra` from now.
            *at = (*at).max(now + extra);
        }
        Ok(())
    }
}
