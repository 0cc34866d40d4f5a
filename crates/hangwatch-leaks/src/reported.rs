//! What audits of parts of the tree have reported already, so that no object is reported
//! twice: a part's audit ([`mod@crate::part`]) adds to it, and both the next part's audit and the
//! whole tree's audit ([`mod@crate::audit`]) leave out what it holds. A module of its own because
//! both sides read it and neither should depend on the other for it.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;

use crate::procfs::SysvKind;
use crate::shm::ShmEntry;

/// What parts' audits reported: [`crate::LeakWatch::finish`] leaves it out.
#[derive(Debug, Default)]
pub(crate) struct Reported {
    /// `/dev/shm` entries by name and inode.
    pub(crate) shm: HashSet<(OsString, u64)>,
    pub(crate) sysv: HashSet<(SysvKind, i32)>,
    pub(crate) files: HashSet<PathBuf>,
    /// Entries of temporary directories by path and inode.
    pub(crate) temp: HashSet<(PathBuf, u64)>,
}

impl Reported {
    pub(crate) fn has_shm(&self, entry: &ShmEntry) -> bool {
        self.shm.contains(&(entry.name.clone(), entry.inode))
    }
}
