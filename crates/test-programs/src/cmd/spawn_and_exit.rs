//! `spawn-and-exit PIDFILE SECS`: the group leader exits at once, leaving a
//! plain-forked child behind in its process group.
//!
//! The process is the same as the one `hold-stdout` makes; the two names say
//! which behaviour a test is about (group cleanup here, pipe EOF there).

use crate::args::Args;
use crate::common::Error;

pub(crate) fn run(mut args: Args) -> Result<(), Error> {
    let pid_file = args.path("PIDFILE")?;
    let secs = args.secs("SECS")?;
    args.finish()?;
    super::leftover::leave_child_behind(&pid_file, secs)
}
