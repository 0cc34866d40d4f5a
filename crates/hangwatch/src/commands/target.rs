//! Which supervisor a command addresses: a config file and the state directory it runs in.

use std::path::{Path, PathBuf};

use hangwatch_config::Config;

use crate::cli::TargetArgs;

/// The config file and state directory of the supervisor a command talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The config file as given (`-f`, default `hangwatch.toml`).
    pub config_file: PathBuf,
    /// The state directory: `--state`, else the config's `state_dir`, else `.hangwatch/` beside
    /// the config file.
    pub state_dir: PathBuf,
}

/// Resolves the target of a command. `--state` wins; otherwise the config file is loaded for
/// its `state_dir`. A config that does not load (missing, or broken while being edited) must not
/// keep the user from reaching a supervisor that runs an older version of it, so the default
/// `.hangwatch/` beside the file is used then, with a note on stderr saying so.
pub fn resolve(args: &TargetArgs) -> Target {
    let config_file = args.file.clone();
    if let Some(state) = &args.state {
        return Target {
            config_file,
            state_dir: state.clone(),
        };
    }
    let state_dir = match Config::load(&config_file) {
        Ok(config) => config.state_dir,
        Err(err) => {
            let fallback = default_state_dir(&config_file);
            let why = match &err {
                hangwatch_config::ConfigError::Io { source, .. } => source.to_string(),
                _ => "it has errors; `hangwatch check` lists them".to_owned(),
            };
            eprintln!(
                "hangwatch: note: {} does not load ({why}); addressing {}, its default state \
                 directory (--state DIR for another)",
                config_file.display(),
                fallback.display()
            );
            fallback
        }
    };
    Target {
        config_file,
        state_dir,
    }
}

/// `.hangwatch/` in the directory of `config_file`, as the config's default `state_dir`.
fn default_state_dir(config_file: &Path) -> PathBuf {
    let absolute = std::path::absolute(config_file).unwrap_or_else(|_| config_file.to_owned());
    absolute
        .parent()
        .map_or_else(|| PathBuf::from(".hangwatch"), |dir| dir.join(".hangwatch"))
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
    fn state_flag_wins_over_the_config() {
        let target = resolve(&args(
            Path::new("/nonexistent/hangwatch.toml"),
            Some(Path::new("/run/hw")),
        ));
        assert_eq!(target.state_dir, Path::new("/run/hw"));
    }

    #[test]
    fn the_config_names_the_state_dir() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("hw.toml");
        std::fs::write(
            &file,
            "state_dir = \"run/state\"\n[service.a]\ncommand = \"true\"\n",
        )
        .expect("write");
        let target = resolve(&args(&file, None));
        assert_eq!(target.state_dir, dir.path().join("run/state"));
        assert_eq!(target.config_file, file);
    }

    #[test]
    fn a_missing_or_broken_config_falls_back_beside_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("hw.toml");
        assert_eq!(
            resolve(&args(&file, None)).state_dir,
            dir.path().join(".hangwatch")
        );
        std::fs::write(
            &file,
            "state_dir = \"elsewhere\"\n[service.a]\nrestrat = 1\n",
        )
        .expect("write");
        assert_eq!(
            resolve(&args(&file, None)).state_dir,
            dir.path().join(".hangwatch")
        );
    }
}
