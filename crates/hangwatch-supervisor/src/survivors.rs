//! A stop whose grace ran out: before the `KILL`, why each process still alive did not end.
//! What it does with the stop signal (ignored, caught, blocked: the masks of
//! `/proc/PID/status`), and where it is (blocked calls, Python stacks: a diagnosis with a short
//! window). The look runs on a blocking thread and is bounded by [`LOOK_BOUND`]: the `KILL`
//! waits for it that long at most, and goes ahead without it past that.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use hangwatch_diagnose::model::{ProcessDiagnosis, ThreadDiagnosis};
use hangwatch_diagnose::{Diagnosis, Options, diagnose};
use hangwatch_process::Signal;
use hangwatch_process::disposition;
use hangwatch_protocol::report::{ProcessInfo, Survival, Survivor};

/// The longest a `KILL` waits for the look at the survivors.
pub(crate) const LOOK_BOUND: Duration = Duration::from_millis(150);

/// The sampling window of the survivors' diagnosis: enough to tell a thread that waits from
/// one that runs, short enough to keep the stop quick.
const LOOK_WINDOW: Duration = Duration::from_millis(20);

/// The most lines of "where" kept per survivor.
const WHERE_LINES: usize = 3;

/// What the look found.
#[derive(Debug, Default)]
pub(crate) struct Look {
    /// Each survivor and why it was alive.
    pub(crate) survivors: Vec<Survivor>,
    /// The diagnoses behind the "where", for the incident.
    pub(crate) diagnoses: Vec<Diagnosis>,
    /// How long it took.
    pub(crate) took: Duration,
}

/// Looks at `survivors`, which outlived `signal`, on a blocking thread; at most
/// [`LOOK_BOUND`]. Past the bound, each survivor's handling (read first) is kept and where it
/// is is said to be unknown.
pub(crate) async fn look(survivors: Vec<ProcessInfo>, signal: Signal, python: bool) -> Look {
    let began = Instant::now();
    // The masks first (one small read of `/proc` each): they are the answer even when the
    // rest runs out of time.
    let handlings: Vec<&'static str> = survivors.iter().map(|p| handling(p.pid, signal)).collect();
    let fallback = survivors.clone();
    let known = handlings.clone();
    let task = tokio::task::spawn_blocking(move || look_now(survivors, handlings, signal, python));
    match tokio::time::timeout(LOOK_BOUND, task).await {
        Ok(Ok(look)) => look,
        _ => Look {
            survivors: fallback
                .into_iter()
                .zip(known)
                .map(|(process, handling)| Survivor {
                    process,
                    survival: Survival {
                        signal: signal.name().to_owned(),
                        handling: handling.to_owned(),
                        at: vec![format!(
                            "(where it was is unknown: the look took longer than {} ms)",
                            LOOK_BOUND.as_millis()
                        )],
                    },
                })
                .collect(),
            diagnoses: Vec::new(),
            took: began.elapsed(),
        },
    }
}

/// [`look`], blocking, with each survivor's handling of the signal already read.
fn look_now(
    survivors: Vec<ProcessInfo>,
    handlings: Vec<&'static str>,
    signal: Signal,
    python: bool,
) -> Look {
    let began = Instant::now();
    let mut diagnoses: Vec<Diagnosis> = Vec::new();
    let mut seen: HashSet<i32> = HashSet::new();
    for process in &survivors {
        if seen.contains(&process.pid) || began.elapsed() > LOOK_BOUND / 2 {
            continue;
        }
        let options = Options {
            sample: LOOK_WINDOW,
            python,
            skip_root: false,
            primary: Some(process.pid),
        };
        if let Ok(diagnosis) = diagnose(process.pid, &options) {
            seen.extend(diagnosis.processes.iter().map(|p| p.pid));
            diagnoses.push(diagnosis);
        }
    }
    let survivors = survivors
        .into_iter()
        .zip(handlings)
        .map(|(process, handling)| {
            let at = diagnoses
                .iter()
                .flat_map(|d| &d.processes)
                .find(|p| p.pid == process.pid)
                .map(where_it_is)
                .unwrap_or_default();
            Survivor {
                process,
                survival: Survival {
                    signal: signal.name().to_owned(),
                    handling: handling.to_owned(),
                    at,
                },
            }
        })
        .collect();
    Look {
        survivors,
        diagnoses,
        took: began.elapsed(),
    }
}

/// What process `pid` does with `signal`, from its masks; `unknown` when they cannot be read.
fn handling(pid: i32, signal: Signal) -> &'static str {
    match disposition::read(pid) {
        Ok(Some(d)) => d.handling(signal).as_str(),
        _ => "unknown",
    }
}

/// Where a process is: its threads with a Python stack or a blocked call, the main thread
/// first, one line each.
fn where_it_is(process: &ProcessDiagnosis) -> Vec<String> {
    let mut threads: Vec<&ThreadDiagnosis> = process.threads.iter().collect();
    threads.sort_by_key(|t| t.tid != process.pid);
    threads
        .into_iter()
        .filter_map(thread_line)
        .take(WHERE_LINES)
        .collect()
}

/// `thread "MainThread" in threading.py:320 Condition.wait ← app.py:57 drain()`, or
/// `thread 4242 "worker" blocked in futex(…)`.
fn thread_line(thread: &ThreadDiagnosis) -> Option<String> {
    let name = thread.display_name();
    if let Some(python) = &thread.python
        && let Some(inner) = python.frames.first()
    {
        let mut line = format!(
            "thread \"{name}\" in {} {}",
            inner.location(),
            inner.function
        );
        if let Some(user) = thread.user_frame()
            && user != inner
        {
            line.push_str(&format!(" ← {} {}()", user.location(), user.function));
        }
        return Some(line);
    }
    let blocked = thread.blocked_in.as_deref()?;
    Some(format!(
        "thread {} \"{name}\" blocked in {blocked}",
        thread.tid
    ))
}

/// `ignored TERM`, `caught TERM and kept running`, …: what the process did with the signal.
#[must_use]
pub(crate) fn handling_words(survival: &Survival) -> String {
    let signal = &survival.signal;
    match survival.handling.as_str() {
        "ignored" => format!("ignored {signal}"),
        "caught" => format!("caught {signal} and kept running"),
        "blocked" => format!("blocked {signal} in every thread"),
        "default" => format!("had {signal} at its default action and was still alive"),
        _ => format!("outlived {signal}"),
    }
}

/// The one line about a survivor: `9935 (python app.py) caught TERM and kept running: thread
/// "MainThread" in threading.py:320 Condition.wait ← app.py:57 drain()`.
#[must_use]
pub(crate) fn sentence(survivor: &Survivor) -> String {
    let mut text = format!(
        "{} ({}) {}",
        survivor.process.pid,
        survivor.process.command,
        handling_words(&survivor.survival)
    );
    if let Some(first) = survivor.survival.at.first() {
        text.push_str(": ");
        text.push_str(first);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn survivor(handling: &str, at: &[&str]) -> Survivor {
        Survivor {
            process: ProcessInfo {
                pid: 9935,
                start_time: 1,
                ppid: 1,
                pgid: 9935,
                command: "python app.py".into(),
            },
            survival: Survival {
                signal: "TERM".into(),
                handling: handling.into(),
                at: at.iter().map(|s| (*s).to_owned()).collect(),
            },
        }
    }

    #[test]
    fn says_what_the_survivor_did_and_where() {
        assert_eq!(
            sentence(&survivor(
                "caught",
                &["thread \"MainThread\" in threading.py:320 Condition.wait ← app.py:57 drain()"]
            )),
            "9935 (python app.py) caught TERM and kept running: thread \"MainThread\" in \
             threading.py:320 Condition.wait ← app.py:57 drain()"
        );
        assert_eq!(
            sentence(&survivor("ignored", &[])),
            "9935 (python app.py) ignored TERM"
        );
    }
}
