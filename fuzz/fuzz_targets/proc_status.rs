//! `/proc/PID/status`.
#![no_main]

use hangwatch_diagnose::python::parsers::status;
use hangwatch_diagnose::sample::parse_switches;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_switches(text);
    let _ = format!("{:?}", status(text));
});
