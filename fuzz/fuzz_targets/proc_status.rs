//! The fuzz target `proc_status`: see `hangwatch_fuzz::proc_status`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hangwatch_fuzz::proc_status(data));
