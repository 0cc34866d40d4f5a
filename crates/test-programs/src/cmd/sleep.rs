//! `sleep SECS`: the well-behaved baseline.

use crate::args::Args;
use crate::common::{self, Error};

pub(crate) fn run(mut args: Args) -> Result<(), Error> {
    let secs = args.secs("SECS")?;
    args.finish()?;
    common::announce_ready();
    common::sleep_for(secs);
    Ok(())
}
