//! Removing System V IPC objects, the one change to them hangwatch makes (`--leaks clean`).
//!
//! Lives here rather than with the leak audit because `shmctl(2)` has no safe wrapper in nix or
//! rustix, and this crate's `sys/` is where hangwatch keeps its `unsafe`.

use std::io;

use crate::sys;

/// Removes SysV shared memory segment `id` (`shmctl(id, IPC_RMID)`): it is destroyed once no
/// process has it attached. `ErrorKind::InvalidInput` when no such segment exists any more.
pub fn remove_sysv_shm(id: i32) -> io::Result<()> {
    sys::remove_sysv_shm(id)
}
