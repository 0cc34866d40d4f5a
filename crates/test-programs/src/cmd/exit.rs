//! `exit CODE`: exits at once with CODE, printing nothing.

use crate::args::Args;
use crate::common::Error;

pub(crate) fn run(mut args: Args) -> Result<(), Error> {
    let code: i32 = args.parse("CODE")?;
    args.finish()?;
    std::process::exit(code)
}
