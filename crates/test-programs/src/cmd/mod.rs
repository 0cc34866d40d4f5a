//! One module per subcommand, each with a `run(Args)` entry point.

pub(crate) mod busy;
pub(crate) mod double_fork;
pub(crate) mod exit;
pub(crate) mod hold_stdout;
pub(crate) mod ignore_term;
pub(crate) mod kill_self;
pub(crate) mod mutex_cycle;
pub(crate) mod signals;
pub(crate) mod sleep;
pub(crate) mod spawn_and_exit;
pub(crate) mod sysv_shm;
pub(crate) mod tree;

mod leftover;
pub(crate) mod notify;
