//! `/proc/PID/maps`, as the leak audit and the Python reader read it.
#![no_main]

use hangwatch_diagnose::python::parsers::maps;
use hangwatch_leaks::procfs::{Device, parse_maps};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let shm = Device { major: 0, minor: 0x1b };
    let mapped = parse_maps(text, Some(shm));
    // Each object is kept once.
    let mut inodes = mapped.inodes.clone();
    inodes.sort_unstable();
    inodes.dedup();
    assert_eq!(inodes.len(), mapped.inodes.len());
    assert!(parse_maps(text, None).inodes.is_empty());
    let _ = format!("{:?}", maps(text));
});
