//! Which supervisor a client verb is about: the config file named by `-f/--file` and the state
//! directory it keeps its records in (`--state` overrides it).
//!
//! The verbs that read records (`logs`, `events`, `incidents`) must work when the config is
//! broken or gone: that is when a user most needs to read what happened. So a config that
//! cannot be read or is invalid does not stop them; the state directory is then the default,
//! `.hangwatch/` beside the file, and a one-line note on stderr says so.

use std::path::{Path, PathBuf};

use hangwatch_config::{Config, ConfigError};

use crate::cli::TargetArgs;

/// A supervisor, as a client finds it.
#[derive(Debug)]
pub struct Target {
    /// The config file, as given.
    pub config_file: PathBuf,
    /// Where the supervisor keeps its logs, events, incidents and control socket.
    pub state_dir: PathBuf,
    /// The config, when it could be read and is valid.
    pub config: Option<Config>,
}

impl Target {
    /// Resolves `args`: `--state` if given, else the config's `state_dir`, else (the config
    /// unreadable or invalid) `.hangwatch/` beside the file, with a note on stderr.
    #[must_use]
    pub fn resolve(args: &TargetArgs) -> Target {
        let loaded = Config::load(&args.file);
        let state_dir = match (&args.state, &loaded) {
            (Some(dir), _) => dir.clone(),
            (None, Ok(config)) => config.state_dir.clone(),
            (None, Err(err)) => {
                let dir = default_state_dir(&args.file);
                eprintln!(
                    "hangwatch: note: {}; reading {}",
                    why_unusable(&args.file, err),
                    dir.display()
                );
                dir
            }
        };
        Target {
            config_file: args.file.clone(),
            state_dir,
            config: loaded.ok(),
        }
    }

    /// The state directory, or an error saying it does not exist and how it would come to.
    pub fn existing_state_dir(&self) -> anyhow::Result<&Path> {
        if self.state_dir.is_dir() {
            return Ok(&self.state_dir);
        }
        anyhow::bail!(
            "no state directory at {}: `hangwatch up -f {}` has not run yet (or give --state DIR)",
            self.state_dir.display(),
            self.config_file.display()
        )
    }

    /// The names of the services the config declares (empty without a valid config).
    #[must_use]
    pub fn configured_services(&self) -> Vec<String> {
        self.config
            .iter()
            .flat_map(|config| config.services.iter().map(|s| s.name.clone()))
            .collect()
    }
}

/// `.hangwatch/` beside `file` (the config's default `state_dir`).
fn default_state_dir(file: &Path) -> PathBuf {
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
    absolute
        .parent()
        .map_or_else(|| PathBuf::from(".hangwatch"), |dir| dir.join(".hangwatch"))
}

/// One line on why the config is not used (the full list of errors is `hangwatch check`'s).
fn why_unusable(file: &Path, err: &ConfigError) -> String {
    match err {
        ConfigError::Io { source, .. } => format!("cannot read {}: {source}", file.display()),
        _ => {
            let count = err.diagnostics().len();
            format!(
                "{} is invalid ({count} error{}; `hangwatch check -f {}` lists them)",
                file.display(),
                if count == 1 { "" } else { "s" },
                file.display()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(file: &Path, state: Option<&Path>) -> TargetArgs {
        TargetArgs {
            file: file.to_owned(),
            state: state.map(Path::to_owned),
        }
    }

    #[test]
    fn the_state_dir_comes_from_the_config_or_the_override() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let file = tmp.path().join("hangwatch.toml");
        std::fs::write(
            &file,
            "state_dir = \"run/state\"\n[service.a]\ncommand = \"true\"\n",
        )
        .expect("write");
        let target = Target::resolve(&args(&file, None));
        assert_eq!(target.state_dir, tmp.path().join("run/state"));
        assert_eq!(target.configured_services(), ["a"]);
        let other = tmp.path().join("other");
        let target = Target::resolve(&args(&file, Some(&other)));
        assert_eq!(target.state_dir, other);
    }

    #[test]
    fn a_broken_or_missing_config_falls_back_beside_the_file() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let file = tmp.path().join("hangwatch.toml");
        std::fs::write(&file, "[service.a]\ncommand = \n").expect("write");
        let target = Target::resolve(&args(&file, None));
        assert_eq!(target.state_dir, tmp.path().join(".hangwatch"));
        assert!(target.config.is_none());
        let missing = tmp.path().join("missing.toml");
        let target = Target::resolve(&args(&missing, None));
        assert_eq!(target.state_dir, tmp.path().join(".hangwatch"));
        let err = target.existing_state_dir().expect_err("no directory");
        assert!(err.to_string().contains("has not run yet"), "{err}");
    }
}
