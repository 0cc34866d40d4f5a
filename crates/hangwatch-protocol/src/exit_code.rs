//! Exit statuses of `hangwatch run`, in one place so that `--help`, the README and the code agree.
//!
//! The numbers follow GNU `timeout` where it defines one (124–127), so scripts written for
//! `timeout` keep working when it is replaced by `hangwatch run`.

/// The program ran to its end; hangwatch passes its own exit code through (0–255).
///
/// This constant exists for documentation; the real value is the program's.
pub const PROGRAM_EXIT_CODE: &str = "the program's own exit code";

/// The program stalled (no heartbeat within its bound, `WATCHDOG=trigger`, or `STOPPING=1`
/// without an exit) and hangwatch stopped it. Below GNU `timeout`'s range, and distinct from
/// every code a shell gives a signal.
pub const STALLED: i32 = 122;

/// With `--leaks fail`: the program succeeded (0) but the run leaked (leftover processes, or
/// objects attributable to the program). Any other status of the program is kept as it is, the
/// leak being in the report. Between the stall code and GNU `timeout`'s range.
pub const LEAKED: i32 = 123;

/// The timeout fired and hangwatch stopped the program (GNU `timeout`'s code).
pub const TIMED_OUT: i32 = 124;

/// hangwatch itself failed: bad arguments, or an operating-system call it depends on failed.
pub const HANGWATCH_FAILED: i32 = 125;

/// The command was found but could not be executed (permission denied, not an executable).
pub const NOT_EXECUTABLE: i32 = 126;

/// The command was not found.
pub const NOT_FOUND: i32 = 127;

/// Added to the signal number when the program died of a signal (`128 + N`, as shells report it).
pub const SIGNAL_BASE: i32 = 128;

/// The exit code for a program that died of signal `signal`.
#[must_use]
pub fn for_signal(signal: i32) -> i32 {
    SIGNAL_BASE + signal
}

/// One row of the exit-status table, for help texts and documentation.
#[derive(Debug, Clone, Copy)]
pub struct ExitCodeDoc {
    /// The code, or a range written out ("0-123").
    pub code: &'static str,
    /// What it means.
    pub meaning: &'static str,
}

/// The exit statuses of `hangwatch run`, in the order a user reads them.
pub const RUN_EXIT_CODES: &[ExitCodeDoc] = &[
    ExitCodeDoc {
        code: "N",
        meaning: "the program exited by itself with status N",
    },
    ExitCodeDoc {
        code: "122",
        meaning: "the program stalled (no heartbeat within its bound) and hangwatch stopped it",
    },
    ExitCodeDoc {
        code: "123",
        meaning: "with --leaks fail: the program succeeded but left processes or objects behind",
    },
    ExitCodeDoc {
        code: "124",
        meaning: "the --timeout deadline passed and hangwatch stopped the program",
    },
    ExitCodeDoc {
        code: "125",
        meaning: "hangwatch itself failed (bad arguments, an operating-system error)",
    },
    ExitCodeDoc {
        code: "126",
        meaning: "the command was found but could not be executed",
    },
    ExitCodeDoc {
        code: "127",
        meaning: "the command was not found",
    },
    ExitCodeDoc {
        code: "128+N",
        meaning: "the program died of signal N (for example 137 for KILL, 143 for TERM)",
    },
];

/// The exit-status table as aligned text, for `--help` and the README.
#[must_use]
pub fn run_exit_codes_table() -> String {
    let width = RUN_EXIT_CODES
        .iter()
        .map(|row| row.code.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for row in RUN_EXIT_CODES {
        out.push_str(&format!("  {:<width$}  {}\n", row.code, row.meaning));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_codes_follow_the_shell() {
        assert_eq!(for_signal(9), 137);
        assert_eq!(for_signal(15), 143);
    }

    #[test]
    fn table_lists_every_code() {
        let table = run_exit_codes_table();
        for code in ["122", "123", "124", "125", "126", "127", "128+N"] {
            assert!(table.contains(code), "{code} missing from:\n{table}");
        }
    }
}
