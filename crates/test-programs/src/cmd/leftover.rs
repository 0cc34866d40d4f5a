//! A child that outlives the main process: what `hold-stdout` and
//! `spawn-and-exit` share.

use std::path::Path;
use std::time::Duration;

use crate::common::{self, Error};
use crate::sys::{self, Forked};

/// How long the main process waits for its child's PID file.
pub(crate) const PID_FILE_WAIT: Duration = Duration::from_secs(5);

/// Forks a child that stays in this process group, inherits every open file
/// (stdout and stderr included), writes its PID file and sleeps `secs`. The
/// main process waits for the PID file, prints ready and returns.
pub(crate) fn leave_child_behind(pid_file: &Path, secs: Duration) -> Result<(), Error> {
    common::remove_stale(pid_file)?;
    match sys::fork()? {
        Forked::Child => {
            common::write_pid_file(pid_file)?;
            common::sleep_for(secs);
            Ok(())
        }
        Forked::Parent(_) => {
            common::wait_for_file(pid_file, PID_FILE_WAIT)?;
            common::announce_ready();
            Ok(())
        }
    }
}
