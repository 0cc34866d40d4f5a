//! The fuzz target `notify`: see `hangwatch_fuzz::notify`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hangwatch_fuzz::notify(data));
