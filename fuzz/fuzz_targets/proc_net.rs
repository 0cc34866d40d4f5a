//! The fuzz target `proc_net`: see `hangwatch_fuzz::proc_net`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hangwatch_fuzz::proc_net(data));
