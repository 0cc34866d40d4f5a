//! The fuzz target `values`: see `hangwatch_fuzz::values`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hangwatch_fuzz::values(data));
