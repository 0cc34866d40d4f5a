//! Was the program stuck, or starved? The host's pressure stall information and each
//! thread's time spent runnable but not running.
//!
//! A program starved of CPU or memory misses its heartbeat like a hung one. Two facts tell
//! them apart:
//!
//! - `/proc/pressure/{cpu,memory,io}` (PSI, Linux 4.20+): the share of time some (or all)
//!   runnable tasks waited for the resource, averaged over 10, 60 and 300 s, and a running
//!   total in microseconds. The totals read before and after the sampling window give the
//!   pressure over the window itself. A kernel built without PSI (or booted with `psi=0`) has
//!   no such files: that is a note in the diagnosis, not an error.
//! - `/proc/PID/task/TID/schedstat`: time on a CPU, time runnable but waiting for a CPU (the
//!   second field, nanoseconds) and timeslices. Its growth over the window is how long the
//!   thread wanted a CPU and did not get one.

use serde::{Deserialize, Serialize};

/// The resources the kernel reports pressure for.
pub const RESOURCES: [&str; 3] = ["cpu", "memory", "io"];

/// One line of a pressure file: `some avg10=1.00 avg60=0.50 avg300=0.10 total=12345`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Averages {
    /// Percentage of the last 10 s.
    pub avg10: f64,
    /// Percentage of the last 60 s.
    pub avg60: f64,
    /// Percentage of the last 300 s.
    pub avg300: f64,
    /// Total stall time since boot, microseconds.
    pub total_us: u64,
}

/// One pressure file, parsed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct PressureFile {
    /// Some runnable task waited for the resource.
    pub some: Averages,
    /// All non-idle tasks waited at once (absent for `cpu` before Linux 5.13).
    pub full: Option<Averages>,
}

/// The pressure on one resource, with the share of the sampling window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResourcePressure {
    /// `cpu`, `memory` or `io`.
    pub resource: String,
    /// The reading at the end of the window.
    pub now: PressureFile,
    /// Percentage of the window during which some task waited for the resource.
    pub some_window_pct: Option<f64>,
    /// Percentage of the window during which all non-idle tasks waited.
    pub full_window_pct: Option<f64>,
}

/// The host's pressure, as read around one diagnosis.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct HostPressure {
    /// Each resource whose pressure file could be read.
    pub resources: Vec<ResourcePressure>,
}

impl HostPressure {
    /// The pressure on `resource`, if read.
    #[must_use]
    pub fn get(&self, resource: &str) -> Option<&ResourcePressure> {
        self.resources.iter().find(|r| r.resource == resource)
    }
}

/// Parses a pressure file's text; `None` when it has no `some` line.
#[must_use]
pub fn parse_pressure(text: &str) -> Option<PressureFile> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let kind = fields.next();
        let mut averages = Averages {
            avg10: f64::NAN,
            avg60: f64::NAN,
            avg300: f64::NAN,
            total_us: u64::MAX,
        };
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            match key {
                "avg10" => averages.avg10 = value.parse().ok()?,
                "avg60" => averages.avg60 = value.parse().ok()?,
                "avg300" => averages.avg300 = value.parse().ok()?,
                "total" => averages.total_us = value.parse().ok()?,
                _ => {}
            }
        }
        let complete = !averages.avg10.is_nan()
            && !averages.avg60.is_nan()
            && !averages.avg300.is_nan()
            && averages.total_us != u64::MAX;
        match kind {
            Some("some") if complete => some = Some(averages),
            Some("full") if complete => full = Some(averages),
            _ => {}
        }
    }
    Some(PressureFile { some: some?, full })
}

/// One reading of every pressure file: `(resource, parsed)` for those present.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    files: Vec<(&'static str, PressureFile)>,
    /// Why a file could not be read, for the diagnosis's notes.
    pub notes: Vec<String>,
    /// Why there was no pressure to read at all (every file failed), said once.
    pub absent: Option<String>,
}

/// Reads `/proc/pressure/*`.
#[must_use]
pub fn read() -> Reading {
    read_in(std::path::Path::new("/proc/pressure"))
}

/// Reads the pressure files of `dir` (`/proc/pressure`).
fn read_in(dir: &std::path::Path) -> Reading {
    let mut reading = Reading::default();
    let mut failed = Vec::new();
    for resource in RESOURCES {
        let path = dir.join(resource);
        match std::fs::read_to_string(&path) {
            Ok(text) => match parse_pressure(&text) {
                Some(file) => reading.files.push((resource, file)),
                None => reading
                    .notes
                    .push(format!("{}: not in the expected format", path.display())),
            },
            Err(err) => failed.push(format!("{}: {err}", path.display())),
        }
    }
    if failed.len() == RESOURCES.len() {
        // One note, not one per file: the kernel has no PSI, or /proc/pressure is hidden.
        let note = format!(
            "no pressure stall information ({}: the kernel was built without CONFIG_PSI, booted \
             with psi=0, or /proc/pressure is hidden); starvation is judged from the threads' \
             run-queue waits alone",
            failed.first().map_or("", String::as_str)
        );
        reading.notes.push(note.clone());
        reading.absent = Some(note);
    } else {
        reading.notes.extend(
            failed
                .into_iter()
                .map(|failed| format!("{failed}; the pressure on that resource is not judged")),
        );
    }
    reading
}

impl Reading {
    /// `some avg10` of `resource`, if its file was read.
    #[must_use]
    pub fn some_avg10(&self, resource: &str) -> Option<f64> {
        self.files
            .iter()
            .find(|(r, _)| *r == resource)
            .map(|(_, f)| f.some.avg10)
    }
}

/// The host's CPU and memory pressure now: `some avg10`, percent, of each file read.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pressure {
    /// `/proc/pressure/cpu`.
    pub cpu: Option<f64>,
    /// `/proc/pressure/memory`.
    pub memory: Option<f64>,
}

impl Pressure {
    /// The higher of the two.
    #[must_use]
    pub fn worst(&self) -> Option<f64> {
        match (self.cpu, self.memory) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Reads the CPU and memory pressure for a decision now (two small files of `/proc`); `None`
/// when the kernel reports neither (no PSI), with the reason.
pub fn host_now() -> Result<Pressure, String> {
    let mut pressure = Pressure::default();
    let mut why = String::new();
    for (resource, slot) in [("cpu", &mut pressure.cpu), ("memory", &mut pressure.memory)] {
        let path = format!("/proc/pressure/{resource}");
        match std::fs::read_to_string(&path) {
            Ok(text) => *slot = parse_pressure(&text).map(|f| f.some.avg10),
            Err(err) => why = format!("{path}: {err}"),
        }
    }
    if pressure.worst().is_none() {
        return Err(if why.is_empty() {
            "/proc/pressure/cpu and memory: not in the expected format".to_owned()
        } else {
            why
        });
    }
    Ok(pressure)
}

/// The pressure over a window that began with `before` and ended with `after`.
#[must_use]
pub fn over_window(before: &Reading, after: &Reading, window_ms: f64) -> HostPressure {
    let share = |then: Option<&Averages>, now: Option<&Averages>| {
        let (then, now) = (then?, now?);
        let stalled_us = now.total_us.checked_sub(then.total_us)? as f64;
        (window_ms > 0.0).then(|| (stalled_us / 1e3 / window_ms * 100.0).min(100.0))
    };
    HostPressure {
        resources: after
            .files
            .iter()
            .map(|(resource, now)| {
                let then = before
                    .files
                    .iter()
                    .find(|(r, _)| r == resource)
                    .map(|(_, f)| f);
                ResourcePressure {
                    resource: (*resource).to_owned(),
                    now: *now,
                    some_window_pct: share(then.map(|f| &f.some), Some(&now.some)),
                    full_window_pct: share(then.and_then(|f| f.full.as_ref()), now.full.as_ref()),
                }
            })
            .collect(),
    }
}

/// The fields of `/proc/PID/task/TID/schedstat`: nanoseconds on a CPU, nanoseconds runnable
/// but waiting for one, and timeslices run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedstat {
    /// Time spent on a CPU.
    pub cpu_ns: u64,
    /// Time spent runnable on a run queue, waiting for a CPU.
    pub run_delay_ns: u64,
}

/// Parses a `schedstat` line.
#[must_use]
pub fn parse_schedstat(text: &str) -> Option<Schedstat> {
    let mut fields = text.split_ascii_whitespace();
    Some(Schedstat {
        cpu_ns: fields.next()?.parse().ok()?,
        run_delay_ns: fields.next()?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_files_are_parsed_with_and_without_full() {
        // Captured on a 2-core machine busy compiling.
        let cpu = "some avg10=93.20 avg60=57.27 avg300=25.03 total=110523477\n\
                   full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        let parsed = parse_pressure(cpu).expect("cpu pressure");
        assert!((parsed.some.avg10 - 93.2).abs() < 1e-9);
        assert_eq!(parsed.some.total_us, 110_523_477);
        assert_eq!(parsed.full.map(|f| f.total_us), Some(0));
        // Kernels before 5.13 have no `full` line for cpu.
        let old = parse_pressure("some avg10=1.50 avg60=0.20 avg300=0.00 total=9000\n")
            .expect("old cpu pressure");
        assert_eq!(old.full, None);
        assert_eq!(parse_pressure(""), None);
        assert_eq!(
            parse_pressure("some avg10=x avg60=0 avg300=0 total=1\n"),
            None
        );
        assert_eq!(
            parse_pressure("some avg10=1.0 total=1\n"),
            None,
            "fields missing"
        );
    }

    #[test]
    fn no_pressure_files_at_all_is_one_note() {
        let empty = std::env::temp_dir().join(format!("hw-no-pressure-{}", std::process::id()));
        std::fs::create_dir_all(&empty).expect("create a directory");
        let reading = read_in(&empty);
        let _ = std::fs::remove_dir(&empty);
        assert_eq!(reading.notes.len(), 1, "{:?}", reading.notes);
        assert!(reading.absent.is_some());
    }

    #[test]
    fn window_pressure_comes_from_the_totals() {
        let at = |some: u64, full: u64| Reading {
            files: vec![(
                "cpu",
                PressureFile {
                    some: Averages {
                        avg10: 50.0,
                        avg60: 1.0,
                        avg300: 1.0,
                        total_us: some,
                    },
                    full: Some(Averages {
                        avg10: 0.0,
                        avg60: 0.0,
                        avg300: 0.0,
                        total_us: full,
                    }),
                },
            )],
            notes: Vec::new(),
            absent: None,
        };
        let host = over_window(&at(1_000_000, 0), &at(1_150_000, 20_000), 200.0);
        let cpu = host.get("cpu").expect("cpu");
        assert_eq!(cpu.some_window_pct, Some(75.0));
        assert_eq!(cpu.full_window_pct, Some(10.0));
        assert!(host.get("io").is_none());
    }

    #[test]
    fn schedstat_gives_cpu_and_run_queue_time() {
        assert_eq!(
            parse_schedstat("2719443 114712 31\n"),
            Some(Schedstat {
                cpu_ns: 2_719_443,
                run_delay_ns: 114_712
            })
        );
        assert_eq!(parse_schedstat("12\n"), None);
    }

    #[test]
    fn the_worst_pressure_is_the_higher_one_read() {
        let both = Pressure {
            cpu: Some(12.0),
            memory: Some(30.5),
        };
        assert_eq!(both.worst(), Some(30.5));
        let cpu = Pressure {
            cpu: Some(3.0),
            memory: None,
        };
        assert_eq!(cpu.worst(), Some(3.0));
        assert_eq!(Pressure::default().worst(), None);
        match host_now() {
            Ok(now) => assert!(now.worst().is_some()),
            Err(why) => assert!(why.starts_with("/proc/pressure/"), "{why}"),
        }
    }

    #[test]
    fn this_hosts_pressure_is_read_or_explained() {
        let reading = read();
        assert_eq!(reading.files.len() + reading.notes.len(), RESOURCES.len());
        for note in &reading.notes {
            assert!(note.starts_with("/proc/pressure/"), "{note}");
        }
    }
}
