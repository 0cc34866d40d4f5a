//! `/proc/PID/fdinfo/N` and the `/proc/PID/fd/N` link.
#![no_main]

use hangwatch_diagnose::fds::parsers::{fd_link, fdinfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = format!("{:?}", fdinfo(text));
    let _ = format!("{:?}", fd_link(text));
});
