//! The supervisor's state directory: logs, the event log, the instance record and its lock.
//! (Provisional minimal versions, replaced by the full ones.)
#![allow(missing_docs, clippy::missing_errors_doc)]

pub mod console;
pub mod dir;
pub mod events;
pub mod instance;
pub mod logfile;
