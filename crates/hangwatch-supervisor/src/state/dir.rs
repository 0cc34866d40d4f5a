use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("another hangwatch (pid {pid:?}) uses this state directory")]
    Busy { pid: Option<i32> },
    #[error(transparent)]
    Io(#[from] io::Error),
}

#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    pub fn open(path: &Path) -> Result<StateDir, StateError> {
        std::fs::create_dir_all(path.join("logs"))?;
        std::fs::create_dir_all(path.join("incidents"))?;
        Ok(StateDir {
            path: path.to_owned(),
        })
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn events_path(&self) -> PathBuf {
        self.path.join("events.jsonl")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.path.join("logs")
    }
    pub fn incidents_dir(&self) -> PathBuf {
        self.path.join("incidents")
    }
    pub fn instance_path(&self) -> PathBuf {
        self.path.join("instance.json")
    }
}
