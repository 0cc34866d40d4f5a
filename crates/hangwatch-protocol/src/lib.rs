//! The types that hangwatch and everything reading its output agree on.
//!
//! This crate depends on no other hangwatch crate, so that a consumer of `--json` output or of a
//! `--report` file can use it without pulling in the supervisor. It owns:
//!
//! - [`exit_code`]: the documented exit statuses of `hangwatch run`, as named constants.
//! - [`report`]: the JSON report of a guarded run (`hangwatch run --report`).
//! - [`event`]: the supervisor's event log (`hangwatch up`), one JSON object per line.
//! - [`control`]: the messages of the control socket (`hangwatch status`, `stop`, `down`…) and a
//!   blocking client.
//!
//! Every record carries a format version ([`report::REPORT_VERSION`]); fields are only ever added.
#![forbid(unsafe_code)]

pub mod control;
pub mod event;
pub mod exit_code;
#[cfg(test)]
mod properties;
pub mod report;
