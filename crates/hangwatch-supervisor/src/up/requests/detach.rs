//! `up --detach`: tell the waiting parent once the services have started.

use std::io::Write;

use super::super::Supervisor;
use super::super::state::Life;

impl Supervisor {
    /// Writes `started` to the ready fd once no service is waiting (with a chance to start)
    /// or starting.
    pub(in crate::up) fn tell_started(&mut self) {
        if self.ready_fd.is_none() {
            return;
        }
        if self.shutdown.is_none() {
            let pending = self.services.iter().any(|s| match s.life {
                Life::Starting { .. } => true,
                Life::Waiting => s.deps.iter().all(|&d| {
                    matches!(
                        self.services[d].life,
                        Life::Waiting | Life::Starting { .. } | Life::Ready { .. }
                    )
                }),
                _ => false,
            });
            if pending {
                return;
            }
            if let Some(fd) = self.ready_fd.take() {
                let mut file = std::fs::File::from(fd);
                let _ = file.write_all(b"started\n");
            }
        } else {
            // Closed without a word: the supervisor is on its way out.
            self.ready_fd = None;
        }
    }
}
