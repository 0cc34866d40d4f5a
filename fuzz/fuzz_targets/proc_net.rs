//! The tables of `/proc/net` (`unix`, `tcp`, `tcp6`, `udp`, `udp6`), `/proc/locks` and
//! `/proc/sysvipc/*`: each parser reads the same text, as if it were its own file.
#![no_main]

use hangwatch_diagnose::fds::parsers::{net_inet, net_unix};
use hangwatch_leaks::procfs::{SysvKind, parse_locks, parse_net_unix, parse_sysvipc};
use hangwatch_process::net_unix::parse_rows;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let rows = parse_rows(text).count();
    assert!(rows < text.lines().count().max(1));
    assert!(parse_net_unix(text).len() <= rows);
    let _ = format!("{:?}", net_unix(text));
    let _ = format!("{:?}", net_inet(text, false));
    let _ = format!("{:?}", net_inet(text, true));
    let _ = parse_locks(text);
    for kind in SysvKind::ALL {
        for object in parse_sysvipc(kind, text) {
            let _ = object.name();
        }
    }
});
