//! Property tests of the audit's `/proc` parsers: `maps`, `/proc/locks`, `/proc/net/unix` and
//! `/proc/sysvipc/*`, each written the way the kernel prints it and read back; any text is read
//! without a panic.
//!
//! Bounded for CI; the open-ended search is the fuzz targets `proc_maps` and `proc_net`
//! (`fuzz/`).

use proptest::prelude::*;

use crate::procfs::{
    Device, Lock, SysvKind, parse_locks, parse_maps, parse_net_unix, parse_sysvipc,
};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const SHM: Device = Device {
    major: 0,
    minor: 0x1b,
};

/// One mapping: on the shm device or another, its inode, and whether it is a SysV segment.
fn mapping() -> impl Strategy<Value = (bool, u64, bool)> {
    (
        any::<bool>(),
        prop_oneof![0u64..50, any::<u64>()],
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn maps_keep_each_shm_inode_and_sysv_segment_once_in_order(
        mappings in prop::collection::vec(mapping(), 0..12),
    ) {
        let mut text = String::new();
        let mut inodes = Vec::new();
        let mut segments = Vec::new();
        for (i, (on_shm, inode, sysv)) in mappings.iter().enumerate() {
            let start = 0x7f00_0000_0000_u64 + (i as u64) * 0x1000;
            let (dev, path) = if *sysv {
                ("00:01".to_owned(), "/SYSV00000000 (deleted)".to_owned())
            } else if *on_shm {
                ("00:1b".to_owned(), format!("/dev/shm/psm_{inode:x}"))
            } else {
                ("fe:00".to_owned(), "/usr/lib/libc.so.6".to_owned())
            };
            text.push_str(&format!("{start:x}-{:x} rw-s 00000000 {dev} {inode:<26}{path}\n", start + 0x1000));
            if *inode == 0 {
                continue;
            }
            if *sysv {
                if let Ok(id) = i32::try_from(*inode)
                    && !segments.contains(&id)
                {
                    segments.push(id);
                }
            } else if *on_shm && !inodes.contains(inode) {
                inodes.push(*inode);
            }
        }
        let mapped = parse_maps(&text, Some(SHM));
        prop_assert_eq!(&mapped.inodes, &inodes);
        prop_assert_eq!(&mapped.sysv_shm, &segments);
        prop_assert!(parse_maps(&text, None).inodes.is_empty());
    }

    #[test]
    fn locks_round_trip_and_waiters_are_skipped(
        locks in prop::collection::vec((any::<i32>(), any::<u32>(), any::<u32>(), any::<u64>(), any::<bool>()), 0..8),
    ) {
        let mut text = String::new();
        let mut expected = Vec::new();
        for (i, (pid, major, minor, inode, waiter)) in locks.iter().enumerate() {
            let arrow = if *waiter { "-> " } else { "" };
            text.push_str(&format!(
                "{}: {arrow}POSIX  ADVISORY  WRITE {pid} {major:02x}:{minor:02x}:{inode} 0 EOF\n",
                i + 1
            ));
            if !waiter {
                expected.push(Lock {
                    pid: *pid,
                    device: Device { major: u64::from(*major), minor: u64::from(*minor) },
                    inode: *inode,
                });
            }
        }
        prop_assert_eq!(parse_locks(&text), expected);
    }

    #[test]
    fn sysv_shared_memory_rows_round_trip(
        rows in prop::collection::vec((any::<i32>(), 0..=i32::MAX, any::<u32>(), 0..=i32::MAX, 0u64..100, any::<u32>(), any::<u32>(), 0..=i64::MAX), 0..6),
    ) {
        let mut text = String::from(
            "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n",
        );
        for (key, id, size, cpid, nattch, uid, cuid, ctime) in &rows {
            text.push_str(&format!(
                "{key:10} {id:10}   600 {size:21} {cpid:5} {cpid:5} {nattch:6} {uid:5}  1000 {cuid:5}  1000          0          0 {ctime:10}                  4096                     0\n"
            ));
        }
        let objects = parse_sysvipc(SysvKind::SharedMemory, &text);
        prop_assert_eq!(objects.len(), rows.len());
        for (object, (key, id, size, cpid, nattch, uid, cuid, ctime)) in objects.iter().zip(&rows) {
            prop_assert_eq!(object.key, i64::from(*key));
            prop_assert_eq!(object.id, *id);
            prop_assert_eq!(object.size, u64::from(*size));
            prop_assert_eq!(object.cpid, Some(*cpid));
            prop_assert_eq!(object.attached, Some(*nattch));
            prop_assert_eq!((object.uid, object.cuid, object.ctime), (*uid, *cuid, *ctime));
            prop_assert_eq!(object.last_users, None);
        }
    }

    #[test]
    fn any_text_reads_without_panic(text in any::<String>()) {
        let _ = parse_maps(&text, Some(SHM));
        let _ = parse_locks(&text);
        let _ = parse_net_unix(&text);
        for kind in SysvKind::ALL {
            for object in parse_sysvipc(kind, &text) {
                let _ = object.name();
            }
        }
    }
}
