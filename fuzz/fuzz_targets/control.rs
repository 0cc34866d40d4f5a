//! The fuzz target `control`: see `hangwatch_fuzz::control`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hangwatch_fuzz::control(data));
