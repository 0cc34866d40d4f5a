//! Integration tests of the `hangwatch` binary against real processes.
//!
//! Each test runs the real binary on the misbehaving programs of `crates/test-programs`, bounds
//! every wait, and checks through `/proc` that nothing it started is left (not even a zombie).

mod harness;

mod alerts;
mod bad_input;
mod check;
mod completions;
mod container;
mod control;
mod diagnose;
mod exit_codes;
mod files;
mod guardian;
mod http;
mod kubernetes;
mod leaks;
mod leftovers;
mod oom;
mod optional;
mod page;
mod pid1;
mod pytest_plugin;
mod signals;
mod socket;
mod stall;
mod survivors;
mod terminal;
mod timeout;
mod up;
mod up_notify;
