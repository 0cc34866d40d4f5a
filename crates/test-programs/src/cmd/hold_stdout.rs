//! `hold-stdout PIDFILE SECS`: the main process exits at once while a child
//! keeps its stdout and stderr open, so a reader of those pipes sees no EOF.

use crate::args::Args;
use crate::common::Error;

pub(crate) fn run(mut args: Args) -> Result<(), Error> {
    let pid_file = args.path("PIDFILE")?;
    let secs = args.secs("SECS")?;
    args.finish()?;
    super::leftover::leave_child_behind(&pid_file, secs)
}
