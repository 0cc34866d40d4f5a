//! `busy SECS`: spins on the CPU for SECS.

use std::time::Instant;

use crate::args::Args;
use crate::common::{self, Error};

pub(crate) fn run(mut args: Args) -> Result<(), Error> {
    let secs = args.secs("SECS")?;
    args.finish()?;
    common::announce_ready();
    let start = Instant::now();
    let mut spins: u64 = 0;
    while start.elapsed() < secs {
        // Keeps the loop from being optimised into something that sleeps.
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
    Ok(())
}
