//! The fuzz target `proc_maps`: see `hangwatch_fuzz::proc_maps`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hangwatch_fuzz::proc_maps(data));
