//! `sysv-shm SIZE SECS [--attach]`: creates a private SysV shared memory segment of SIZE bytes,
//! optionally attaches it, prints `ready <pid> <shmid>`, sleeps SECS and exits without removing
//! it: the segment is abandoned, as a crashed program abandons one.

use crate::args::Args;
use crate::common::Error;
use crate::sys;

pub(crate) fn run(mut args: Args) -> Result<(), Error> {
    let size: usize = args.parse("SIZE")?;
    let secs = args.secs("SECS")?;
    let attach = args.flag("--attach");
    args.finish()?;
    let id = sys::sysv_shm_create(size)?;
    if attach {
        sys::sysv_shm_attach(id)?;
    }
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "ready {} {id}", std::process::id());
        let _ = stdout.flush();
    }
    crate::common::sleep_for(secs);
    Ok(())
}
