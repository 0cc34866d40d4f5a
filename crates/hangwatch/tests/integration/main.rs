//! Integration tests of the `hangwatch` binary against real processes.
//!
//! Each test runs the real binary on the misbehaving programs of `crates/test-programs`, bounds
//! every wait, and checks through `/proc` that nothing it started is left (not even a zombie).

mod harness;

mod check;
mod completions;
mod control;
mod diagnose;
mod exit_codes;
mod files;
mod leaks;
mod leftovers;
mod pytest_plugin;
mod signals;
mod socket;
mod stall;
mod terminal;
mod timeout;
mod up;
