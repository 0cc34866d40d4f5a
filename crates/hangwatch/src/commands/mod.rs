//! One module per subcommand.

pub mod check;
pub mod diagnose;
pub mod run;
pub mod up;
