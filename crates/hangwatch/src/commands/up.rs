//! `hangwatch up`: the supervisor in the foreground.

use std::io::IsTerminal;

use hangwatch_config::Config;
use hangwatch_protocol::exit_code;
use hangwatch_supervisor::up::{UpSpec, View, up};

use crate::cli::{ColorArg, UpArgs};

/// Loads the config, supervises until the shutdown, and returns the supervisor's exit code:
/// 0 after a requested shutdown (or when every service ended well), 1 when a service gave up
/// with `on_give_up = "shutdown"` or the services ended in failure, 125 when hangwatch could not
/// start (a bad config, a state directory in use).
pub fn main(args: &UpArgs) -> i32 {
    let config = match Config::load(&args.file) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return exit_code::HANGWATCH_FAILED;
        }
    };
    let color = match args.color {
        ColorArg::Always => true,
        ColorArg::Never => false,
        ColorArg::Auto => {
            std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    let view = if args.json {
        View::Json
    } else {
        View::Lines { color }
    };
    let spec = UpSpec {
        config,
        view,
        diagnose_sample: std::time::Duration::from_millis(200),
        ready_fd: None,
        allow_root_control: false,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hangwatch: cannot start the event loop: {err}");
            return exit_code::HANGWATCH_FAILED;
        }
    };
    let result = runtime.block_on(up(spec));
    // A diagnosis abandoned during the shutdown may still be reading /proc: do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(outcome) => outcome.exit_code,
        Err(err) => {
            eprintln!("hangwatch: {err}");
            exit_code::HANGWATCH_FAILED
        }
    }
}
