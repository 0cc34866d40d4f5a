//! `hangwatch diagnose PID`: a live diagnosis printed to stdout.

use std::io::Write;

use hangwatch_diagnose::{Options, diagnose, render};
use hangwatch_protocol::exit_code;

use crate::cli::DiagnoseArgs;

/// Diagnoses the process and prints the result; 0 when printed, 125 when there is nothing to
/// diagnose.
pub fn main(args: &DiagnoseArgs) -> i32 {
    let options = Options {
        sample: args.sample,
        python: !args.no_python,
        skip_root: false,
        primary: None,
    };
    let diagnosis = match diagnose(args.pid, &options) {
        Ok(diagnosis) => diagnosis,
        Err(err) => {
            eprintln!("hangwatch: {err}");
            return exit_code::HANGWATCH_FAILED;
        }
    };
    let text = if args.json {
        match serde_json::to_string_pretty(&diagnosis) {
            Ok(json) => json + "\n",
            Err(err) => {
                eprintln!("hangwatch: cannot encode the diagnosis: {err}");
                return exit_code::HANGWATCH_FAILED;
            }
        }
    } else {
        render(&diagnosis)
    };
    // A closed stdout (`| head`) is not a failure of the diagnosis.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    0
}
