//! `hangwatch diagnose TARGET`: a live diagnosis printed to stdout.
//!
//! A PID is diagnosed here, by reading `/proc`. A service name is sent to the running
//! supervisor, which diagnoses the service's program (it knows its whole tree, escaped
//! descendants included), keeps the report as an incident, and answers with its text.

use hangwatch_diagnose::{Options, diagnose, render};
use hangwatch_protocol::control::{Reply, Request};
use hangwatch_protocol::exit_code;

use crate::cli::{DiagnoseArgs, DiagnoseTarget};
use crate::commands::client::{call, connect, to_json, unexpected};
use crate::commands::out;
use crate::commands::target::Target;

/// The sampling window of a PID's diagnosis when `--sample` is not given.
const DEFAULT_SAMPLE: std::time::Duration = std::time::Duration::from_millis(200);

/// Diagnoses the target and prints the result; 0 when printed, 125 when there is no such
/// process, 1 when the supervisor could not diagnose the service.
pub fn main(args: &DiagnoseArgs) -> i32 {
    match &args.target {
        DiagnoseTarget::Pid(pid) => process(*pid, args),
        DiagnoseTarget::Service(name) => service(name, args),
    }
}

fn process(pid: i32, args: &DiagnoseArgs) -> i32 {
    let options = Options {
        sample: args.sample.unwrap_or(DEFAULT_SAMPLE),
        python: !args.no_python,
        skip_root: false,
        primary: None,
    };
    let diagnosis = match diagnose(pid, &options) {
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
    out::exit_code(out::print(&text), 0)
}

fn service(name: &str, args: &DiagnoseArgs) -> i32 {
    if args.no_python {
        eprintln!("hangwatch: --no-python applies to a PID; the supervisor decides for a service");
        return exit_code::HANGWATCH_FAILED;
    }
    let target = Target::resolve(&args.supervisor);
    let mut client = match connect(&target) {
        Ok(client) => client,
        Err(code) => return code,
    };
    let request = Request::Diagnose {
        service: name.to_owned(),
        sample_ms: args
            .sample
            .map(|sample| u64::try_from(sample.as_millis()).unwrap_or(u64::MAX)),
    };
    let reply = match call(&mut client, &target, &request, args.json) {
        Ok(reply) => reply,
        Err(code) => return code,
    };
    let Reply::Diagnosis(diagnosis) = &reply else {
        return unexpected(&reply);
    };
    let text = if args.json {
        to_json(&reply)
    } else if diagnosis.text.ends_with('\n') {
        diagnosis.text.clone()
    } else {
        format!("{}\n", diagnosis.text)
    };
    out::exit_code(out::print(&text), 0)
}
