//! Parsers for the `/proc` files the audit reads: a process's `maps`, `/proc/locks`,
//! `/proc/net/unix` and `/proc/sysvipc/*`.
//!
//! Each takes text, so unit tests feed captured files. They skip lines they cannot read rather
//! than fail: the kernel may add columns, and one odd line must not hide the rest.

use hangwatch_process::net_unix;

/// A device number as `/proc` prints it (`major:minor` in hexadecimal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Device {
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
}

impl Device {
    /// Splits a `st_dev` value.
    #[must_use]
    pub fn from_dev_t(dev: u64) -> Device {
        Device {
            major: nix::sys::stat::major(dev),
            minor: nix::sys::stat::minor(dev),
        }
    }

    /// Parses `"00:1b"` (hexadecimal, as in `maps` and `/proc/locks`).
    #[must_use]
    pub fn parse_hex_pair(text: &str) -> Option<Device> {
        let (major, minor) = text.split_once(':')?;
        Some(Device {
            major: u64::from_str_radix(major, 16).ok()?,
            minor: u64::from_str_radix(minor, 16).ok()?,
        })
    }
}

/// The shared objects one process maps, from `/proc/PID/maps`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// Inodes of files mapped from the device of interest (the tmpfs of `/dev/shm`).
    pub inodes: Vec<u64>,
    /// IDs of SysV shared memory segments attached (shown as `/SYSV<key> (deleted)`, with the
    /// segment ID as the inode).
    pub sysv_shm: Vec<i32>,
}

/// Reads the text of `/proc/PID/maps`, keeping mappings of files on `device` and SysV
/// segments. A process maps an object many times over (one line per region); each is kept once.
#[must_use]
pub fn parse_maps(text: &str, device: Option<Device>) -> Mapped {
    let mut mapped = Mapped::default();
    for line in text.lines() {
        // address perms offset dev inode [path]
        let mut fields = line.split_ascii_whitespace();
        let (Some(_), Some(_), Some(_), Some(dev), Some(inode)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        if inode == "0" {
            continue;
        }
        let Ok(inode) = inode.parse::<u64>() else {
            continue;
        };
        if fields.next().is_some_and(|path| path.starts_with("/SYSV")) {
            if let Ok(id) = i32::try_from(inode)
                && !mapped.sysv_shm.contains(&id)
            {
                mapped.sysv_shm.push(id);
            }
            continue;
        }
        if device.is_some()
            && Device::parse_hex_pair(dev) == device
            && !mapped.inodes.contains(&inode)
        {
            mapped.inodes.push(inode);
        }
    }
    mapped
}

/// One lock of `/proc/locks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    /// The holder's PID (`-1` for open-file-description locks on older kernels).
    pub pid: i32,
    /// The locked file's device.
    pub device: Device,
    /// The locked file's inode.
    pub inode: u64,
}

/// Reads the text of `/proc/locks`: held locks only (waiters, shown after `->`, are skipped).
#[must_use]
pub fn parse_locks(text: &str) -> Vec<Lock> {
    let mut locks = Vec::new();
    for line in text.lines() {
        // "1: POSIX  ADVISORY  WRITE 1234 00:1b:77 0 EOF"
        let mut fields = line.split_ascii_whitespace();
        if fields.next().is_none() {
            continue;
        }
        let Some(kind) = fields.next() else { continue };
        if kind == "->" {
            continue;
        }
        let (Some(_mode), Some(_access), Some(pid), Some(file)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else {
            continue;
        };
        let Some((device, inode)) = file.rsplit_once(':') else {
            continue;
        };
        let (Some(device), Ok(inode)) = (Device::parse_hex_pair(device), inode.parse::<u64>())
        else {
            continue;
        };
        locks.push(Lock { pid, device, inode });
    }
    locks
}

/// One socket of `/proc/net/unix` that has a path in the file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixSocket {
    /// The socket's inode (what `/proc/PID/fd/N` shows as `socket:[INODE]`).
    pub inode: u64,
    /// The path it is bound to, as the binder gave it (relative to its working directory
    /// when relative).
    pub path: String,
    /// Whether it is a server's end: listening, or a bound datagram socket. Accepted
    /// connections show the listener's path too, and are not.
    pub serving: bool,
}

/// `SOCK_DGRAM`.
const DATAGRAM: u8 = 2;

/// Reads the text of `/proc/net/unix`, keeping sockets bound to a file-system path (abstract
/// ones, shown with `@`, leave no file behind).
#[must_use]
pub fn parse_net_unix(text: &str) -> Vec<UnixSocket> {
    net_unix::parse_rows(text)
        .filter_map(|row| {
            let path = row.path.filter(|p| !p.starts_with('@'))?;
            Some(UnixSocket {
                inode: row.inode,
                path: path.to_owned(),
                serving: row.listening()
                    || (row.kind == DATAGRAM && row.state == net_unix::SS_UNCONNECTED),
            })
        })
        .collect()
}

/// The three kinds of SysV IPC objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SysvKind {
    /// `/proc/sysvipc/shm`.
    SharedMemory,
    /// `/proc/sysvipc/sem`.
    Semaphore,
    /// `/proc/sysvipc/msg`.
    MessageQueue,
}

impl SysvKind {
    /// Every kind, in the order they are read.
    pub const ALL: [SysvKind; 3] = [
        SysvKind::SharedMemory,
        SysvKind::Semaphore,
        SysvKind::MessageQueue,
    ];

    /// The file that lists objects of this kind.
    #[must_use]
    pub fn proc_file(self) -> &'static str {
        match self {
            SysvKind::SharedMemory => "/proc/sysvipc/shm",
            SysvKind::Semaphore => "/proc/sysvipc/sem",
            SysvKind::MessageQueue => "/proc/sysvipc/msg",
        }
    }

    fn id_column(self) -> &'static str {
        match self {
            SysvKind::SharedMemory => "shmid",
            SysvKind::Semaphore => "semid",
            SysvKind::MessageQueue => "msqid",
        }
    }

    fn size_column(self) -> &'static str {
        match self {
            SysvKind::SharedMemory => "size",
            SysvKind::Semaphore => "nsems",
            SysvKind::MessageQueue => "cbytes",
        }
    }
}

/// One SysV IPC object, with the columns its kind has (`None` where it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysvObject {
    /// Which kind.
    pub kind: SysvKind,
    /// The key (`IPC_PRIVATE` is 0).
    pub key: i64,
    /// The ID.
    pub id: i32,
    /// Bytes for shared memory and message queues; semaphores in the set for semaphores.
    pub size: u64,
    /// The owner's user ID.
    pub uid: u32,
    /// The creator's user ID.
    pub cuid: u32,
    /// The creator's PID (shared memory only: the kernel keeps none for the others).
    pub cpid: Option<i32>,
    /// How many processes have it attached (shared memory only).
    pub attached: Option<u64>,
    /// The last sender and receiver (message queues only; 0 when none yet).
    pub last_users: Option<(i32, i32)>,
    /// Creation or last `IPC_SET`, in seconds since the epoch.
    pub ctime: i64,
}

impl SysvObject {
    /// How reports name it.
    #[must_use]
    pub fn name(&self) -> String {
        let kind = match self.kind {
            SysvKind::SharedMemory => "shmid",
            SysvKind::Semaphore => "semid",
            SysvKind::MessageQueue => "msqid",
        };
        // The key is a 32-bit value that /proc prints signed; ipcs shows it in hexadecimal.
        format!("{kind} {} key {:#010x}", self.id, self.key as u32)
    }
}

/// Reads the text of one `/proc/sysvipc` file, by its header's column names.
#[must_use]
pub fn parse_sysvipc(kind: SysvKind, text: &str) -> Vec<SysvObject> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.split_ascii_whitespace().collect();
    let column = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(key), Some(id), Some(size), Some(uid), Some(cuid), Some(ctime)) = (
        column("key"),
        column(kind.id_column()),
        column(kind.size_column()),
        column("uid"),
        column("cuid"),
        column("ctime"),
    ) else {
        return Vec::new();
    };
    let (cpid, nattch, lspid, lrpid) = (
        column("cpid"),
        column("nattch"),
        column("lspid"),
        column("lrpid"),
    );
    let mut objects = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let get = |index: usize| fields.get(index).copied();
        let number = |index: Option<usize>| index.and_then(get).and_then(|v| v.parse::<i64>().ok());
        let (Some(key), Some(id), Some(size), Some(uid), Some(cuid), Some(ctime)) = (
            number(Some(key)),
            number(Some(id)).and_then(|v| i32::try_from(v).ok()),
            number(Some(size)).and_then(|v| u64::try_from(v).ok()),
            number(Some(uid)).and_then(|v| u32::try_from(v).ok()),
            number(Some(cuid)).and_then(|v| u32::try_from(v).ok()),
            number(Some(ctime)),
        ) else {
            continue;
        };
        let pid = |index: Option<usize>| number(index).and_then(|v| i32::try_from(v).ok());
        objects.push(SysvObject {
            kind,
            key,
            id,
            size,
            uid,
            cuid,
            cpid: pid(cpid),
            attached: number(nattch).and_then(|v| u64::try_from(v).ok()),
            last_users: pid(lspid).zip(pid(lrpid)),
            ctime,
        });
    }
    objects
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines of a Python process that created a `SharedMemory` and a semaphore (whose file was
    // made under a temporary name and linked, so the mapping shows the old name), plus an
    // attached SysV segment; captured on Linux 6.x.
    const MAPS: &str = "\
559dbe530000-559dbe532000 r--p 00000000 fe:00 247030                     /usr/bin/python3.11
7f3d23f53000-7f3d23f54000 rw-s 00000000 00:1b 77                         /dev/shm/psm_10497245
7f3d23f55000-7f3d23f56000 rw-s 00000000 00:1b 81                         /dev/shm/sem.Ab3xYz (deleted)
7f3d23f56000-7f3d23f57000 rw-s 00000000 00:1b 77                         /dev/shm/psm_10497245
7f3d23f60000-7f3d23f70000 rw-s 00000000 00:01 32769                      /SYSV00000000 (deleted)
7f3d23f70000-7f3d23f71000 rw-p 00000000 00:00 0
7ffd1c9e7000-7ffd1c9e9000 r--p 00000000 00:00 0                          [vvar]
";

    #[test]
    fn maps_yield_shm_inodes_once_and_sysv_segments() {
        let shm = Device {
            major: 0,
            minor: 0x1b,
        };
        let mapped = parse_maps(MAPS, Some(shm));
        assert_eq!(mapped.inodes, vec![77, 81]);
        assert_eq!(mapped.sysv_shm, vec![32769]);
        // Without the device, only the SysV segment is recognised.
        assert!(parse_maps(MAPS, None).inodes.is_empty());
    }

    #[test]
    fn device_numbers_round_trip() {
        let dev = nix::sys::stat::makedev(0, 0x1b);
        assert_eq!(
            Device::from_dev_t(dev),
            Device::parse_hex_pair("00:1b").expect("hex")
        );
        assert_eq!(
            Device::parse_hex_pair("fd:01"),
            Some(Device {
                major: 253,
                minor: 1
            })
        );
        assert_eq!(Device::parse_hex_pair("zz"), None);
    }

    #[test]
    fn locks_skip_waiters() {
        let text = "\
1: POSIX  ADVISORY  WRITE 1234 00:1b:77 0 EOF
1: -> POSIX  ADVISORY  WRITE 1300 00:1b:77 0 EOF
2: FLOCK  ADVISORY  WRITE 1235 fd:01:131090 0 EOF
3: OFDLCK ADVISORY  READ  -1 00:05:9 0 EOF
";
        let locks = parse_locks(text);
        assert_eq!(locks.len(), 3);
        assert_eq!(
            locks[1],
            Lock {
                pid: 1235,
                device: Device {
                    major: 253,
                    minor: 1
                },
                inode: 131_090
            }
        );
        assert_eq!(locks[2].pid, -1);
    }

    #[test]
    fn unix_sockets_with_paths_and_their_roles() {
        let text = "\
Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 23456 /run/app.sock
0000000000000000: 00000003 00000000 00000000 0001 03 23457 /run/app.sock
0000000000000000: 00000002 00000000 00000000 0002 01 23458 /run/notify
0000000000000000: 00000002 00000000 00010000 0001 01 23459 @abstract
0000000000000000: 00000003 00000000 00000000 0001 03  1576
";
        let sockets = parse_net_unix(text);
        let summary: Vec<(u64, &str, bool)> = sockets
            .iter()
            .map(|s| (s.inode, s.path.as_str(), s.serving))
            .collect();
        assert_eq!(
            summary,
            vec![
                (23456, "/run/app.sock", true),
                (23457, "/run/app.sock", false),
                (23458, "/run/notify", true),
            ]
        );
    }

    #[test]
    fn sysvipc_files_are_read_by_column_name() {
        let shm = "\
       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap
         0      32769   600                 65536  4242     0      0  1000  1000  1000  1000          0          0 1767225600                     0                     0
";
        let objects = parse_sysvipc(SysvKind::SharedMemory, shm);
        assert_eq!(objects.len(), 1);
        let segment = &objects[0];
        assert_eq!(
            (segment.id, segment.size, segment.cpid, segment.attached),
            (32769, 65536, Some(4242), Some(0))
        );
        assert_eq!(segment.name(), "shmid 32769 key 0x00000000");

        let sem = "\
       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime
1234567890          3   666          4  1000  1000  1000  1000          0 1767225600
";
        let objects = parse_sysvipc(SysvKind::Semaphore, sem);
        assert_eq!(
            (objects[0].id, objects[0].size, objects[0].cpid),
            (3, 4, None)
        );

        let msg = "\
       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime
        -1          5   600         10          1  4242     0  1000  1000  1000  1000 1767225600          0 1767225600
";
        let objects = parse_sysvipc(SysvKind::MessageQueue, msg);
        assert_eq!(objects[0].last_users, Some((4242, 0)));
        assert_eq!(objects[0].name(), "msqid 5 key 0xffffffff");
    }

    #[test]
    fn odd_lines_are_skipped() {
        assert!(parse_maps("garbage\n\n", None).sysv_shm.is_empty());
        assert!(parse_locks("1: POSIX\n").is_empty());
        assert!(parse_net_unix("header\nshort line\n").is_empty());
        assert!(parse_sysvipc(SysvKind::SharedMemory, "").is_empty());
        assert!(parse_sysvipc(SysvKind::SharedMemory, "no columns\n1 2 3\n").is_empty());
    }
}
