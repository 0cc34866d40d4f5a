//! Reading another process's memory with `process_vm_readv`, without stopping it.
//!
//! The kernel allows it under the same rule as ptrace attach (same user and, with yama, an
//! ancestor or CAP_SYS_PTRACE), but it never pauses the target: a read races with the program,
//! so every value read here is a hint to be checked against other evidence, never a fact alone.

use std::io::{self, IoSliceMut};

use nix::sys::uio::{RemoteIoVec, process_vm_readv};
use nix::unistd::Pid;

/// A window onto one process's address space.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pid: i32,
}

impl Memory {
    /// The memory of `pid`.
    #[must_use]
    pub fn of(pid: i32) -> Memory {
        Memory { pid }
    }

    /// Reads exactly `buf.len()` bytes at `addr`.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        if addr == 0 {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        let len = buf.len();
        let remote = [RemoteIoVec {
            base: usize::try_from(addr).map_err(|_| io::Error::from_raw_os_error(libc::EFAULT))?,
            len,
        }];
        let read = process_vm_readv(
            Pid::from_raw(self.pid),
            &mut [IoSliceMut::new(buf)],
            &remote,
        )
        .map_err(io::Error::from)?;
        if read == len {
            Ok(())
        } else {
            Err(io::Error::from(io::ErrorKind::UnexpectedEof))
        }
    }

    /// A native-endian `i32` at `addr`.
    pub fn read_i32(&self, addr: u64) -> io::Result<i32> {
        let mut buf = [0u8; 4];
        self.read(addr, &mut buf)?;
        Ok(i32::from_ne_bytes(buf))
    }

    /// A native-endian `u64` at `addr` (a pointer or a `Py_ssize_t` of the target).
    pub fn read_u64(&self, addr: u64) -> io::Result<u64> {
        let mut buf = [0u8; 8];
        self.read(addr, &mut buf)?;
        Ok(u64::from_ne_bytes(buf))
    }

    /// A native-endian `u32` at `addr`.
    pub fn read_u32(&self, addr: u64) -> io::Result<u32> {
        let mut buf = [0u8; 4];
        self.read(addr, &mut buf)?;
        Ok(u32::from_ne_bytes(buf))
    }

    /// A `struct timespec` (64-bit seconds and nanoseconds) at `addr`, as nanoseconds.
    pub fn read_timespec_ns(&self, addr: u64) -> io::Result<u128> {
        let mut buf = [0u8; 16];
        self.read(addr, &mut buf)?;
        let (secs, nanos) = buf.split_at(8);
        let secs = i64::from_ne_bytes(secs.try_into().unwrap_or_default());
        let nanos = i64::from_ne_bytes(nanos.try_into().unwrap_or_default());
        if secs < 0 || !(0..1_000_000_000).contains(&nanos) {
            return Err(io::Error::from(io::ErrorKind::InvalidData));
        }
        Ok(secs as u128 * 1_000_000_000 + nanos as u128)
    }

    /// A `struct timeval` (64-bit seconds and microseconds) at `addr`, as nanoseconds.
    pub fn read_timeval_ns(&self, addr: u64) -> io::Result<u128> {
        let ns = self.read_timespec_ns(addr)?;
        // Same layout as timespec with microseconds in the second word.
        let secs = ns / 1_000_000_000;
        let micros = ns % 1_000_000_000;
        if micros >= 1_000_000 {
            return Err(io::Error::from(io::ErrorKind::InvalidData));
        }
        Ok(secs * 1_000_000_000 + micros * 1_000)
    }

    /// A NUL-terminated string of at most `max` bytes at `addr`.
    pub fn read_c_string(&self, addr: u64, max: usize) -> io::Result<String> {
        // Read page by page: a string near the end of a mapping must not fail for the bytes
        // past it.
        let mut out = Vec::new();
        let mut at = addr;
        while out.len() < max {
            let to_page_end = 4096 - (at % 4096) as usize;
            let mut chunk = vec![0u8; to_page_end.min(max - out.len())];
            self.read(at, &mut chunk)?;
            if let Some(end) = chunk.iter().position(|b| *b == 0) {
                out.extend_from_slice(&chunk[..end]);
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            out.extend_from_slice(&chunk);
            at += chunk.len() as u64;
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_memory_through_the_kernel() {
        let value: i32 = 0x1234_5678;
        let text = b"hello\0world";
        let ts = libc::timespec {
            tv_sec: 900,
            tv_nsec: 5,
        };
        let me = Memory::of(std::process::id() as i32);
        assert_eq!(me.read_i32(&raw const value as u64).ok(), Some(value));
        assert_eq!(
            me.read_c_string(text.as_ptr() as u64, 64).ok().as_deref(),
            Some("hello")
        );
        assert_eq!(
            me.read_timespec_ns(&raw const ts as u64).ok(),
            Some(900_000_000_005)
        );
        assert!(me.read_i32(0).is_err());
    }
}
