//! The fuzz target `config`: see `hangwatch_fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hangwatch_fuzz::config(data));
