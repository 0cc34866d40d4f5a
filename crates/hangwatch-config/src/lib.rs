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
pub mod size;
mod suggest;

pub use error::{ConfigError, Diagnostic};
pub use model::{
    Alert, AlertOn, Backoff, Check, Command, Config, Http, Liveness, MaxRestarts, OnGiveUp, Probe,
    Readiness, Replica, RestartPolicy, Service,
};
