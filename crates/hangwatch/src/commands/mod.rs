//! One module per subcommand, and what the client verbs share.

pub mod check;
pub mod diagnose;
pub mod events;
pub mod follow;
pub mod incidents;
pub mod logs;
pub mod out;
pub mod run;
pub mod target;
pub mod time;
pub mod up;
