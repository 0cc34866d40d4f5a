//! A notify datagram: every non-empty line is understood or counted as ignored, exactly once.
#![no_main]

use hangwatch_supervisor::liveness::notify::parse_datagram;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (messages, ignored) = parse_datagram(data);
    let body = data.strip_suffix(b"\0").unwrap_or(data);
    let lines = body.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
    assert_eq!(messages.len() + ignored, lines);
});
