//! One module per subcommand, and what several share.

pub mod check;
pub mod client;
pub mod completions;
pub mod control;
pub mod diagnose;
pub mod events;
pub mod incidents;
pub mod logs;
pub mod man;
pub mod out;
pub mod run;
pub mod status;
pub mod target;
pub mod time;
pub mod up;
