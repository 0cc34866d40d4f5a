//! `kill-self SIG`: dies of signal SIG (a number), whatever its inherited
//! disposition or mask.

use crate::args::Args;
use crate::common::Error;
use crate::sys;

pub(crate) fn run(mut args: Args) -> Result<(), Error> {
    let signo: libc::c_int = args.parse("SIG")?;
    args.finish()?;
    if signo <= 0 {
        return Err(Error::Usage(format!("SIG must be positive, not {signo}")));
    }
    sys::raise_with_default_action(signo)?;
    Err(Error::io(
        "die of the signal",
        std::io::Error::other(format!("signal {signo} did not end the process")),
    ))
}
