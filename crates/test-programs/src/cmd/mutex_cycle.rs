//! `mutex-cycle`: two threads lock two glibc mutexes in opposite order and
//! deadlock, the classic lock-order inversion of native programs.
//!
//! Thread `holder-a` takes A then wants B; `holder-b` takes B then wants A.
//! A barrier makes sure each holds its first lock before either asks for the
//! second, so the deadlock is certain. The main thread then waits in `join`.

use std::sync::{Arc, Barrier};

use crate::args::Args;
use crate::common::{self, Error};
use crate::sys::PthreadMutex;

static A: PthreadMutex = PthreadMutex::new();
static B: PthreadMutex = PthreadMutex::new();

pub(crate) fn run(args: Args) -> Result<(), Error> {
    args.finish()?;
    let barrier = Arc::new(Barrier::new(3));
    let spawn = |name: &str, first: &'static PthreadMutex, second: &'static PthreadMutex| {
        let barrier = Arc::clone(&barrier);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                first.lock_forever();
                barrier.wait();
                second.lock_forever();
            })
            .map_err(|err| Error::io("spawn a thread", err))
    };
    let one = spawn("holder-a", &A, &B)?;
    let two = spawn("holder-b", &B, &A)?;
    barrier.wait();
    common::announce_ready();
    let _ = one.join();
    let _ = two.join();
    Ok(())
}
