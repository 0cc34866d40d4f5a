//! Reading a process's environment from `/proc/PID/environ`.
//!
//! The file holds the environment the program was started with (`execve`'s `envp`), as
//! NUL-terminated `NAME=value` entries. Changes a program makes later with `setenv` are usually
//! not reflected, which suits the one use here: finding the processes started under a given
//! variable, such as the instance token that hangwatch gives every service.

use std::io::{self, Read};

use crate::stat::is_gone;

/// Whether the environment of process `pid` has an entry equal to `needle` (a whole
/// `NAME=value` entry, byte for byte).
///
/// A process that is gone, or whose environment may not be read (another user's, without
/// privileges), answers `false`: a process can exit between any two reads, and what may not be
/// read cannot match. Kernel threads and zombies have an empty environment.
pub fn environ_contains(pid: i32, needle: &[u8]) -> io::Result<bool> {
    let file = match std::fs::File::open(format!("/proc/{pid}/environ")) {
        Ok(file) => file,
        Err(err) if is_unreadable(&err) => return Ok(false),
        Err(err) => return Err(err),
    };
    match reader_contains(file, needle) {
        Ok(found) => Ok(found),
        Err(err) if is_unreadable(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Whether the NUL-separated entries read from `reader` include one equal to `needle`.
///
/// Streams through the input with a small buffer: an environment may be megabytes long, and
/// the startup scan reads every process on the machine.
pub fn reader_contains(mut reader: impl Read, needle: &[u8]) -> io::Result<bool> {
    if needle.is_empty() || needle.contains(&0) {
        return Ok(false);
    }
    let mut buf = [0u8; 8192];
    // Bytes of the current entry that matched `needle` so far; `None` once it differs.
    let mut matched = Some(0usize);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        for &byte in &buf[..n] {
            if byte == 0 {
                if matched == Some(needle.len()) {
                    return Ok(true);
                }
                matched = Some(0);
            } else {
                matched = matched
                    .filter(|&m| needle.get(m) == Some(&byte))
                    .map(|m| m + 1);
            }
        }
    }
    // The last entry may lack its terminating NUL.
    Ok(matched == Some(needle.len()))
}

/// Every entry (`NAME=VALUE`) of the environment `pid` was started with; empty when the process
/// is gone or unreadable. For callers that ask about one process many times (one scan, many
/// services), where [`environ_contains`] would read the file again each time.
#[must_use]
pub fn entries(pid: i32) -> std::collections::HashSet<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn is_unreadable(err: &io::Error) -> bool {
    is_gone(err) || err.kind() == io::ErrorKind::PermissionDenied
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(env: &[u8], needle: &[u8]) -> bool {
        reader_contains(env, needle).expect("read from a slice")
    }

    #[test]
    fn matches_whole_entries_only() {
        let env = b"PATH=/bin\0HANGWATCH_INSTANCE=abc\0HOME=/root\0";
        assert!(contains(env, b"HANGWATCH_INSTANCE=abc"));
        assert!(contains(env, b"PATH=/bin"));
        assert!(contains(env, b"HOME=/root"));
        assert!(!contains(env, b"HANGWATCH_INSTANCE=ab"));
        assert!(!contains(env, b"HANGWATCH_INSTANCE=abcd"));
        assert!(!contains(env, b"ANGWATCH_INSTANCE=abc"));
        assert!(!contains(env, b"X_HANGWATCH_INSTANCE=abc"));
        assert!(!contains(env, b""));
        assert!(!contains(env, b"PATH=/bin\0HANGWATCH_INSTANCE=abc"));
    }

    #[test]
    fn last_entry_without_terminator_counts() {
        assert!(contains(b"A=1\0B=2", b"B=2"));
        assert!(!contains(b"A=1\0B=23", b"B=2"));
        assert!(!contains(b"", b"B=2"));
    }

    #[test]
    fn entries_spanning_reads_are_matched() {
        // Put the entry across the 8 KiB buffer boundary.
        let mut env = vec![b'x'; 8180];
        env.insert(0, b'P');
        env.extend_from_slice(b"\0TOKEN=across\0");
        assert!(contains(&env, b"TOKEN=across"));
        let reader = io::Read::chain(&b"A=1\0TOK"[..], &b"EN=across\0"[..]);
        assert!(reader_contains(reader, b"TOKEN=across").expect("read"));
    }

    #[test]
    fn own_environment_is_readable_and_missing_processes_are_false() {
        // PATH is set under cargo and nextest; read our own value to build the needle.
        let path = std::env::var_os("PATH").expect("PATH is set");
        let mut needle = b"PATH=".to_vec();
        needle.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()));
        let me = std::process::id() as i32;
        assert!(environ_contains(me, &needle).expect("read own environ"));
        assert!(!environ_contains(me, b"PATH=/surely/not/this").expect("read"));
        // PID max on Linux is at most 2^22, so this PID cannot exist.
        assert!(!environ_contains(i32::MAX, &needle).expect("gone is false"));
    }
}
