//! `hangwatch run`: a guarded one-shot run.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use hangwatch_process::StopPlan;
use hangwatch_protocol::exit_code;
use hangwatch_protocol::report::{LeakPolicy, RunReport};
use hangwatch_supervisor::incident::{DiagnoseSpec, default_incident_dir};
use hangwatch_supervisor::liveness::detector::LivenessSpec;
use hangwatch_supervisor::liveness::output::OutputMode;
use hangwatch_supervisor::run::{NotifyMode, RunSpec, run};

use crate::cli::{LeaksArg, NotifySocketArg, RunArgs};

/// Where the report goes, opened before the program starts so that a bad path is refused with
/// nothing started.
enum ReportSink {
    Stderr,
    File(File, std::path::PathBuf),
}

pub fn main(args: RunArgs) -> i32 {
    match run_command(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("hangwatch: error: {err:#}");
            exit_code::HANGWATCH_FAILED
        }
    }
}

fn run_command(args: RunArgs) -> anyhow::Result<i32> {
    let sink = match &args.report {
        None => None,
        Some(path) if path == Path::new("-") => Some(ReportSink::Stderr),
        Some(path) => Some(ReportSink::File(
            File::create(path)
                .with_context(|| format!("failed to create report file {}", path.display()))?,
            path.clone(),
        )),
    };
    // A directory that is not there is refused before the program runs, not after.
    if let Some(path) = &args.metrics_file
        && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        anyhow::bail!(
            "the directory of --metrics-file {} does not exist",
            path.display()
        );
    }
    let metrics_file = args.metrics_file.clone();
    let liveness = liveness_spec(&args)?;
    // The output is read for --stall-on-silence and --read-output, and by default when it
    // goes to a pipe anyway: its last lines then go into the incident.
    let output = if args.stall_on_silence.is_some() || args.read_output {
        OutputMode::for_stdout()
    } else {
        OutputMode::when_already_piped()
    };
    let spec = RunSpec {
        liveness,
        output,
        notify: match args.notify_socket {
            NotifySocketArg::Path => NotifyMode::Path,
            NotifySocketArg::Abstract => NotifyMode::Abstract,
            NotifySocketArg::None => NotifyMode::Off,
        },
        argv: args.command,
        timeout: args.timeout,
        stop: StopPlan {
            signal: args.stop_signal,
            grace: args.grace,
        },
        foreground_tty: !args.no_foreground,
        diagnose: (!args.no_diagnose).then(|| DiagnoseSpec {
            sample: args.diagnose_sample,
            ..DiagnoseSpec::in_dir(args.incident_dir.unwrap_or_else(default_incident_dir))
        }),
        leaks: match args.leaks {
            LeaksArg::Report => LeakPolicy::Report,
            LeaksArg::Clean => LeakPolicy::Clean,
            LeaksArg::Fail => LeakPolicy::Fail,
        },
        stall_defer: args
            .stall_defer_under_pressure
            .map(|up_to| hangwatch_config::StallDefer {
                up_to,
                above_pct: args
                    .stall_defer_above
                    .unwrap_or(hangwatch_config::StallDefer::ABOVE),
            }),
    };

    // One thread: the program's death signal (PR_SET_PDEATHSIG) follows the thread that
    // spawned it, so that thread must live as long as hangwatch.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the event loop")?;
    let outcome = runtime
        .block_on(run(spec))
        .context("failed to run the program")?;

    if let Some(summary) = outcome.summary() {
        eprintln!("{summary}");
    }
    if let Some(sink) = sink {
        write_report(sink, &outcome.report)?;
    }
    if let Some(path) = metrics_file {
        let text = hangwatch_supervisor::textfile::render(&outcome.report);
        hangwatch_supervisor::textfile::write_atomically(&path, &text)
            .with_context(|| format!("failed to write the metrics file {}", path.display()))?;
    }
    Ok(outcome.exit_code())
}

/// The heartbeat sources and bounds the options ask for, refused when they contradict each
/// other (before anything starts).
fn liveness_spec(args: &RunArgs) -> anyhow::Result<LivenessSpec> {
    let mut spec = LivenessSpec {
        exit_grace: args.exit_grace.unwrap_or(args.grace),
        silence: args.stall_on_silence,
        warn: args.stall_warn,
        ..LivenessSpec::default()
    };
    match (&args.heartbeat_file, args.stall) {
        (Some(path), Some(bound)) => spec.file = Some((path.clone(), bound)),
        (None, Some(bound)) => spec.watchdog = Some(bound),
        (Some(_), None) => anyhow::bail!("--heartbeat-file needs --stall (the file's maximum age)"),
        (None, None) => {}
    }
    if args.stall_defer_under_pressure.is_some()
        && spec.watchdog.is_none()
        && spec.file.is_none()
        && spec.silence.is_none()
    {
        anyhow::bail!(
            "--stall-defer-under-pressure needs a stall bound (--stall or --stall-on-silence)"
        );
    }
    if let Some(warn) = args.stall_warn {
        let bounds: Vec<_> = [spec.watchdog, spec.file.as_ref().map(|f| f.1), spec.silence]
            .into_iter()
            .flatten()
            .collect();
        if bounds.is_empty() {
            anyhow::bail!("--stall-warn needs a stall bound (--stall or --stall-on-silence)");
        }
        if bounds.iter().any(|bound| warn >= *bound) {
            anyhow::bail!("--stall-warn must be shorter than the stall bound it warns about");
        }
    }
    Ok(spec)
}

fn write_report(sink: ReportSink, report: &RunReport) -> anyhow::Result<()> {
    let mut json = serde_json::to_string_pretty(report).context("failed to encode the report")?;
    json.push('\n');
    match sink {
        ReportSink::Stderr => {
            // A closed stderr must not turn a finished run into a failure.
            let _ = std::io::stderr().write_all(json.as_bytes());
        }
        ReportSink::File(mut file, path) => {
            file.write_all(json.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("failed to write report file {}", path.display()))?;
        }
    }
    Ok(())
}
