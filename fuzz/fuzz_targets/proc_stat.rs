//! The fuzz target `proc_stat`: see `hangwatch_fuzz::proc_stat`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hangwatch_fuzz::proc_stat(data));
