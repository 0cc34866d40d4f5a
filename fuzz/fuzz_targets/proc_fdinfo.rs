//! The fuzz target `proc_fdinfo`: see `hangwatch_fuzz::proc_fdinfo`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hangwatch_fuzz::proc_fdinfo(data));
