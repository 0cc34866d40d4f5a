//! The shared file mappings of a process, asked of the kernel one at a time.
//!
//! The text of `/proc/PID/maps` costs the kernel a path lookup per mapping, shared or not:
//! about 150 µs for a Python process, 15 ms for a tree of a hundred. `PROCMAP_QUERY` (Linux
//! 6.11) answers "the next shared file mapping above this address" directly, so a process with
//! a handful of shared mappings costs a handful of calls. Older kernels answer `ENOTTY`;
//! [`shared_file_mappings`] then says so and the caller reads the text.

use std::io;
use std::os::fd::AsFd;

use crate::sys;

/// One `MAP_SHARED` mapping of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedMapping {
    /// The file's device, major and minor.
    pub device: (u32, u32),
    /// The file's inode (a SysV segment's ID for `/SYSV…` mappings).
    pub inode: u64,
    /// The path as `/proc/PID/maps` would show it (` (deleted)` included).
    pub path: String,
}

/// Every shared file mapping of `pid`. `Ok(None)` when the kernel cannot be asked this way
/// (older than 6.11); `NotFound` or `PermissionDenied` when the process is gone or not ours to
/// inspect.
pub fn shared_file_mappings(pid: i32) -> io::Result<Option<Vec<SharedMapping>>> {
    let maps = std::fs::File::open(format!("/proc/{pid}/maps"))?;
    // PATH_MAX: a longer path cannot be mapped.
    let mut name = vec![0u8; 4096];
    let mut found = Vec::new();
    let mut address = 0u64;
    loop {
        let mapping = match sys::procmap_query(maps.as_fd(), address, &mut name) {
            Ok(Some(mapping)) => mapping,
            Ok(None) => return Ok(Some(found)),
            Err(err) if found.is_empty() && err.raw_os_error() == Some(libc::ENOTTY) => {
                return Ok(None);
            }
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => {
                return Err(io::ErrorKind::NotFound.into());
            }
            Err(err) => return Err(err),
        };
        found.push(SharedMapping {
            device: (mapping.dev_major, mapping.dev_minor),
            inode: mapping.inode,
            path: String::from_utf8_lossy(&name[..mapping.name_len]).into_owned(),
        });
        if mapping.end <= address {
            return Ok(Some(found));
        }
        address = mapping.end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::MetadataExt;
    use std::process::{Command, Stdio};

    #[test]
    fn a_shared_mapping_of_another_process_is_found_with_its_inode() {
        let path = std::env::temp_dir().join(format!("hangwatch-mappings-{}", std::process::id()));
        std::fs::write(&path, [0u8; 4096]).expect("create");
        let inode = std::fs::metadata(&path).expect("stat").ino();
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import mmap, sys, time\n\
                 f = open(sys.argv[1], 'r+b')\n\
                 m = mmap.mmap(f.fileno(), 4096)\n\
                 print('ready', flush=True)\n\
                 time.sleep(30)",
            ])
            .arg(&path)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python3");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
        let found = shared_file_mappings(child.id() as i32);
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&path);
        assert_eq!(line.trim(), "ready");
        let Some(found) = found.expect("query") else {
            // A kernel older than 6.11: nothing to check here.
            return;
        };
        assert!(
            found
                .iter()
                .any(|m| m.inode == inode && m.path.contains("hangwatch-mappings")),
            "{found:?}"
        );
        // Only shared mappings: the interpreter's own (private) file mappings are not listed.
        assert!(
            found.iter().all(|m| !m.path.contains("python")),
            "{found:?}"
        );
    }
}
