//! hangwatch's config file, `hangwatch.toml`: read, checked and resolved into a [`Config`].
//!
//! Everything a user can get wrong is caught here, with the file, line and column of the value at
//! fault and what was expected, so that `hangwatch check` and `hangwatch up` reject a bad file
//! before anything starts (and `reload` before anything changes). Every problem is reported, not
//! only the first: [`ConfigError::Invalid`] holds one [`Diagnostic`] for each.
//!
//! ```
//! use std::path::Path;
//!
//! let text = r#"
//! [service.db]
//! command = ["postgres", "-D", "data"]
//! ready = { tcp = "127.0.0.1:5432" }
//!
//! [service.web]
//! command = "python -m http.server 8080"
//! depends_on = ["db"]
//! "#;
//! let config = hangwatch_config::Config::parse(text, Path::new("/srv/app/hangwatch.toml"))?;
//! assert_eq!(config.state_dir, Path::new("/srv/app/.hangwatch"));
//! assert_eq!(config.start_levels(), [vec!["db".to_owned()], vec!["web".to_owned()]]);
//!
//! let err = hangwatch_config::Config::parse("[service.web]\nrestrat = 1\n", Path::new("hw.toml"))
//!     .expect_err("invalid");
//! assert!(err.to_string().contains("hw.toml:2:1: unknown key `restrat` in service `web`; did you mean `restart`?"));
//! # Ok::<(), hangwatch_config::ConfigError>(())
//! ```
//!
//! The reference of every key is `docs/config.md` in the repository.
#![forbid(unsafe_code)]

pub mod duration;
mod env_file;
mod error;
mod levels;
pub mod model;
mod parse;
#[cfg(test)]
mod properties;
pub mod size;
mod suggest;

pub use error::{ConfigError, Diagnostic};
pub use model::{
    Alert, AlertOn, Backoff, Check, Command, Config, Http, HttpOpen, Liveness, MaxRestarts,
    OnGiveUp, Probe, Readiness, Replica, RestartPolicy, Service, StallDefer,
};

/// A bad line of an env file: `(line, column, message)`, both 1-based.
#[doc(hidden)]
pub type EnvFileError = (usize, usize, String);

/// Reads the text of an `env_file` as the config parser does: every variable in order, or the
/// error of every bad line. For the fuzz targets (`fuzz/`) and the property tests; not an API.
#[doc(hidden)]
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, Vec<EnvFileError>> {
    env_file::parse_env_file(text).map_err(|errors| {
        errors
            .into_iter()
            .map(|error| (error.line, error.column, error.message))
            .collect()
    })
}
