//! Integration tests of `hangwatch-diagnose` against real processes.

mod harness;
mod python;
mod verdicts;
