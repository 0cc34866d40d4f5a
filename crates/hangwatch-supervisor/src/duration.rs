//! Durations as users write them; the one parser lives in `hangwatch-config`, so the command line
//! and the config file read `90s` alike.

pub use hangwatch_config::duration::*;
