//! `ignore-term SECS`: ignores SIGTERM, so that only SIGKILL stops it early.

use nix::sys::signal::Signal;

use crate::args::Args;
use crate::common::{self, Error};
use crate::sys;

pub(crate) fn run(mut args: Args) -> Result<(), Error> {
    let secs = args.secs("SECS")?;
    args.finish()?;
    sys::ignore(Signal::SIGTERM)?;
    common::announce_ready();
    common::sleep_for(secs);
    Ok(())
}
