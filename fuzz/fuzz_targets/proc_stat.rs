//! `/proc/PID/stat`, `cmdline` and `task/TID/syscall`.
#![no_main]

use hangwatch_diagnose::python::parsers::syscall_stack_pointer;
use hangwatch_diagnose::syscall::parse_line;
use hangwatch_process::stat::{format_cmdline, parse_stat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(line) = format_cmdline(data) {
        assert!(!line.is_empty());
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(stat) = parse_stat(text) {
        // The name lies between the first `(` and the last `)`.
        assert!(text.contains(&format!("({})", stat.comm)));
        let _ = stat.is_zombie();
    }
    let _ = parse_line(text);
    let _ = syscall_stack_pointer(text);
});
