//! The state directory read back, for `hangwatch logs`, `events` and `incidents`: the files the
//! writers next door ([`super::logfile`], [`super::events`], the incident files) leave, across
//! their rotations. Nothing here takes the directory's lock: a reader runs beside the
//! supervisor that writes, or after it.
//!
//! - [`logs`]: which services have logs, their last lines across rotations, lines of several
//!   logs in the order of their times.
//! - [`events`]: every record of the event log, oldest first, and the filter by time.
//! - [`incidents`]: the incidents kept, joined with what the event log says of them.
//!
//! Following what is written next is [`super::follow`]'s.

pub mod events;
pub mod incidents;
pub mod logs;

use std::io;
use std::path::PathBuf;

/// Why the state directory could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A file or directory could not be read.
    #[error("{about} {}", path.display())]
    Io {
        /// What was being done.
        about: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A diagnosis file holds no diagnosis.
    #[error("parse {}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
    /// An incident has no file to show.
    #[error("incident {id} has no {missing}")]
    NoFile {
        /// The incident.
        id: String,
        /// `JSON file`, or `files` when it has none at all.
        missing: &'static str,
    },
    /// No incident is kept.
    #[error("no incidents in {}", dir.display())]
    NoIncidents {
        /// The incidents directory.
        dir: PathBuf,
    },
    /// No incident has the ID asked for, nor starts with it.
    #[error(
        "no incident `{id}` in {} ({count} there; `hangwatch incidents` lists them)",
        dir.display()
    )]
    UnknownIncident {
        /// The ID asked for.
        id: String,
        /// The incidents directory.
        dir: PathBuf,
        /// How many incidents it holds.
        count: usize,
    },
    /// The ID asked for is the start of several incidents' IDs.
    #[error("`{id}` names {} incidents: {}", ids.len(), ids.join(", "))]
    AmbiguousIncident {
        /// The ID asked for.
        id: String,
        /// The IDs it starts.
        ids: Vec<String>,
    },
}

impl ReadError {
    /// An [`ReadError::Io`] maker for `map_err`.
    fn io(about: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> ReadError {
        let path = path.into();
        move |source| ReadError::Io {
            about,
            path,
            source,
        }
    }
}
