//! hangwatch's engine: the event loop that runs a program, watches it and stops it.
//!
//! The binary stays thin (parse, call, print); everything that decides *when* to signal, wait or
//! give up lives here, so that `hangwatch run` and (later) the `hangwatch up` daemon share one engine,
//! and so that tests can drive it in-process.
//!
//! - [`run`]: a guarded one-shot run (`hangwatch run`): one program, a deadline, a bounded stop of
//!   its whole tree, and a report.
#![forbid(unsafe_code)]

pub mod duration;
pub mod incident;
pub mod liveness;
pub mod probe;
#[cfg(test)]
mod properties;
pub mod run;
pub mod state;
mod summary;
pub mod up;
