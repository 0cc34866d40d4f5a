//! Integration tests of the `hangwatch` binary against real processes.
//!
//! Each test runs the real binary on the misbehaving programs of `crates/test-programs`, bounds
//! every wait, and checks through `/proc` that nothing it started is left (not even a zombie).

mod harness;

mod check;
mod control;
mod diagnose;
mod exit_codes;
mod files;
mod leaks;
mod leftovers;
mod signals;
mod socket;
mod stall;
mod survivors;
mod terminal;
mod timeout;
mod up;
mod up_notify;
