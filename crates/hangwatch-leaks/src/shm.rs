//! The POSIX shared memory directory (`/dev/shm`): what is in it, and how each entry is named.
//!
//! glibc keeps POSIX named semaphores (`sem_open("/x")` is `/dev/shm/sem.x`) and shared memory
//! (`shm_open("/x")` is `/dev/shm/x`) as files of this tmpfs, so one directory listing sees both.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hangwatch_protocol::report::LeakKind;

use crate::procfs::Device;

/// Where glibc keeps POSIX semaphores and shared memory.
pub const SHM_DIR: &str = "/dev/shm";

/// One regular file of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmEntry {
    /// The file name.
    pub name: OsString,
    /// Its inode: with the name, what tells an object from a later one of the same name.
    pub inode: u64,
    /// Owner.
    pub uid: u32,
    /// Size in bytes.
    pub size: u64,
}

impl ShmEntry {
    /// Semaphore or shared memory, by glibc's naming.
    #[must_use]
    pub fn kind(&self) -> LeakKind {
        if self.name.as_encoded_bytes().starts_with(b"sem.") {
            LeakKind::PosixSemaphore
        } else {
            LeakKind::PosixSharedMemory
        }
    }
}

/// The directory and the device it lives on.
#[derive(Debug, Clone)]
pub struct ShmDir {
    /// The directory.
    pub path: PathBuf,
    /// Its device, to recognise its files in `/proc/PID/maps`; `None` when it does not exist.
    pub device: Option<Device>,
}

impl ShmDir {
    /// `dir`, looked at now. A missing directory is no error: there is nothing to audit there.
    pub fn open(dir: &Path) -> io::Result<ShmDir> {
        let device = match std::fs::metadata(dir) {
            Ok(meta) => Some(Device::from_dev_t(meta.dev())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => return Err(err),
        };
        Ok(ShmDir {
            path: dir.to_owned(),
            device,
        })
    }

    /// Every regular file in the directory. One `statx` per entry; entries removed meanwhile
    /// are skipped.
    pub fn list(&self) -> io::Result<Vec<ShmEntry>> {
        if self.device.is_none() {
            return Ok(Vec::new());
        }
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            let entry = entry?;
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            if !meta.is_file() {
                continue;
            }
            entries.push(ShmEntry {
                name: entry.file_name(),
                inode: meta.ino(),
                uid: meta.uid(),
                size: meta.size(),
            });
        }
        Ok(entries)
    }

    /// The entry `name` now, if it is still a regular file.
    pub fn entry(&self, name: &std::ffi::OsStr) -> io::Result<Option<ShmEntry>> {
        match std::fs::symlink_metadata(self.path.join(name)) {
            Ok(meta) if meta.is_file() => Ok(Some(ShmEntry {
                name: name.to_owned(),
                inode: meta.ino(),
                uid: meta.uid(),
                size: meta.size(),
            })),
            Ok(_) => Ok(None),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Whether `path` (as a process's `/proc/PID/fd` link shows it) is inside this directory.
    #[must_use]
    pub fn contains(&self, path: &Path) -> bool {
        path.parent() == Some(self.path.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> ShmEntry {
        ShmEntry {
            name: name.into(),
            inode: 1,
            uid: 0,
            size: 32,
        }
    }

    #[test]
    fn semaphores_are_told_from_shared_memory_by_name() {
        assert_eq!(entry("sem.mp-1a2b").kind(), LeakKind::PosixSemaphore);
        assert_eq!(entry("psm_1a2b").kind(), LeakKind::PosixSharedMemory);
        assert_eq!(entry("semaphore").kind(), LeakKind::PosixSharedMemory);
    }

    #[test]
    fn a_missing_directory_lists_nothing() {
        let dir = ShmDir::open(Path::new("/nonexistent/hangwatch-shm")).expect("open");
        assert!(dir.device.is_none());
        assert!(dir.list().expect("list").is_empty());
    }

    #[test]
    fn the_real_directory_lists_a_file_made_in_it() {
        let dir = ShmDir::open(Path::new(SHM_DIR)).expect("open /dev/shm");
        if dir.device.is_none() {
            return;
        }
        let name = format!("hangwatch-leaks-unit-{}", std::process::id());
        let path = dir.path.join(&name);
        std::fs::write(&path, b"x").expect("create");
        let listed = dir.list();
        let single = dir.entry(name.as_ref());
        std::fs::remove_file(&path).expect("remove");
        let listed = listed.expect("list");
        let found = listed.iter().find(|e| e.name == *name).expect("listed");
        assert_eq!(found.size, 1);
        assert_eq!(single.expect("stat"), Some(found.clone()));
        assert!(dir.contains(&path));
        assert!(!dir.contains(Path::new("/dev/shmx/a")));
    }
}
