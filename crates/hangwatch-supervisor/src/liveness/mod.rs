//! Liveness: the heartbeat sources that tell a program that is working from one that is alive
//! but stuck, and the detector that turns them into a deadline.
//!
//! - [`notify`]: the systemd notify protocol (`NOTIFY_SOCKET`: `READY=1`, `WATCHDOG=1`, …), and
//!   [`notified`], what each of its messages means (the same for `run` and `up`).
//! - [`mod@file`]: a status file's modification time.
//! - [`output`]: bytes on the program's stdout/stderr, drained without ever blocking it.
//! - [`socket_dir`]: where the sockets programs must reach are created.

pub mod detector;
pub mod file;
pub mod notified;
pub mod notify;
pub mod output;
pub mod socket_dir;
pub mod tail;
