//! `double-fork PIDFILE SECS [--stay SECS2]`: the classic daemonisation. A
//! child calls `setsid(2)`, forks the grandchild and exits, so the grandchild
//! is in another session and process group and is reparented to the nearest
//! subreaper (or init): only a subreaper finds it again. The grandchild keeps
//! the inherited stdout and stderr.
//!
//! The main process exits 0 once the grandchild has written its PID file, or
//! with `--stay SECS2` sleeps SECS2 first, so a test can tell "the leader
//! exited, an escapee remains" from "the leader is alive, an escapee exists".

use std::time::Duration;

use nix::sys::wait;
use nix::unistd;

use crate::args::Args;
use crate::common::{self, Error};
use crate::sys::{self, Forked};

/// How long the main process waits for the grandchild's PID file.
const PID_FILE_WAIT: Duration = Duration::from_secs(5);

/// Exit code of the intermediate child when `setsid` or `fork` fails.
const EXIT_CHILD_FAILED: libc::c_int = 1;

pub(crate) fn run(mut args: Args) -> Result<(), Error> {
    let pid_file = args.path("PIDFILE")?;
    let secs = args.secs("SECS")?;
    let stay = args.option_secs("--stay")?;
    args.finish()?;
    common::remove_stale(&pid_file)?;

    let child = match sys::fork()? {
        Forked::Parent(child) => child,
        Forked::Child => {
            match start_grandchild() {
                // The grandchild goes on as the daemon.
                Ok(Forked::Child) => {
                    common::write_pid_file(&pid_file)?;
                    common::sleep_for(secs);
                    return Ok(());
                }
                Ok(Forked::Parent(_)) => sys::exit_immediately(0),
                Err(error) => {
                    eprintln!("hw-fixture: failed to {error}");
                    sys::exit_immediately(EXIT_CHILD_FAILED)
                }
            }
        }
    };

    common::wait_for_file(&pid_file, PID_FILE_WAIT)?;
    // The intermediate child exits right after its fork, so this returns
    // promptly.
    wait::waitpid(child, None).map_err(|errno| Error::io("reap the intermediate child", errno))?;
    common::announce_ready();
    if let Some(stay) = stay {
        common::sleep_for(stay);
    }
    Ok(())
}

/// In the intermediate child: leaves the session, then forks.
fn start_grandchild() -> Result<Forked, Error> {
    unistd::setsid().map_err(|errno| Error::io("setsid", errno))?;
    sys::fork()
}
