//! hangwatch's config file, `hangwatch.toml`: read, checked and resolved into a [`Config`].
//!
//! Everything a user can get wrong is caught here, with the file, line and column of the value at
//! fault and what was expected, so that `hangwatch check` and `hangwatch up` reject a bad file
//! before anything starts (and `reload` before anything changes).
#![forbid(unsafe_code)]

pub mod model;

pub use model::{
    Backoff, Check, Command, Config, Liveness, MaxRestarts, OnGiveUp, Probe, Readiness,
    RestartPolicy, Service,
};
