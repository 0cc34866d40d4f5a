//! `notify BEATS INTERVAL`: a Rust program written for systemd, using the `sd-notify` crate as
//! real services do: `READY=1`, then BEATS `WATCHDOG=1` every INTERVAL seconds, then alive and
//! silent forever (a stall the watchdog must catch).

use crate::args::Args;
use crate::common::{self, Error};

pub(crate) fn run(mut args: Args) -> Result<(), Error> {
    let beats: u32 = args.parse("BEATS")?;
    let interval = args.secs("INTERVAL")?;
    args.finish()?;
    sd_notify::notify(&[sd_notify::NotifyState::Ready])
        .map_err(|err| Error::io("send READY=1", err))?;
    common::announce_ready();
    for _ in 0..beats {
        sd_notify::notify(&[sd_notify::NotifyState::Watchdog])
            .map_err(|err| Error::io("send WATCHDOG=1", err))?;
        std::thread::sleep(interval);
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status("stuck")]);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
