//! Liveness: the heartbeat sources that tell a program that is working from one that is alive
//! but stuck, and the detector that turns them into a deadline.
//!
//! - [`notify`]: the systemd notify protocol (`NOTIFY_SOCKET`: `READY=1`, `WATCHDOG=1`, …).
//! - [`mod@file`]: a status file's modification time.
//! - [`output`]: bytes on the program's stdout/stderr, drained without ever blocking it.

pub mod detector;
pub mod file;
pub mod notify;
pub mod output;
