//! Property tests of the config's parsers: durations, sizes, env files and the whole file.
//!
//! Bounded for CI (a few dozen cases each, well under a second); the open-ended search is the
//! fuzz targets' job (`fuzz/`, targets `config` and `values`).

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use crate::duration::parse_duration;
use crate::size::parse_size;
use crate::{Config, ConfigError};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A directory that does not exist: a relative `env_file` fails to read.
const NOWHERE: &str = "/nonexistent/hangwatch-properties/hangwatch.toml";

const UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("B", 1),
    ("kB", 1000),
    ("MB", 1000 * 1000),
    ("GB", 1000 * 1000 * 1000),
    ("TB", 1000 * 1000 * 1000 * 1000),
    ("k", 1 << 10),
    ("KiB", 1 << 10),
    ("M", 1 << 20),
    ("MiB", 1 << 20),
    ("G", 1 << 30),
    ("GiB", 1 << 30),
    ("T", 1 << 40),
    ("TiB", 1 << 40),
];

/// A value that env files can hold in double quotes, written with the escapes the parser reads.
fn double_quoted(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '"' | '\\' | '$' | '`' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_is_a_duration_or_an_error_naming_it(text in any::<String>()) {
        if let Err(err) = parse_duration(&text) {
            prop_assert!(err.to_string().contains(&text));
        }
    }

    #[test]
    fn durations_round_trip_through_their_written_forms(
        ms in prop_oneof![0u64..100_000_000, 0u64..(400 * 24 * 3600 * 1000)],
    ) {
        let duration = Duration::from_millis(ms);
        let human = humantime::format_duration(duration).to_string();
        prop_assert_eq!(parse_duration(&human), Ok(duration), "{}", human);
        prop_assert_eq!(parse_duration(&format!("{ms}ms")), Ok(duration));
        // A fraction goes through an `f64`, exact to the nanosecond below about 10^6 s.
        if ms < 1_000_000_000 {
            let secs = format!("{}.{:03}", ms / 1000, ms % 1000);
            prop_assert_eq!(parse_duration(&secs), Ok(duration), "{}", secs);
            prop_assert_eq!(parse_duration(&format!("{secs}s")), Ok(duration), "{}s", secs);
        }
    }

    #[test]
    fn any_text_is_a_size_or_an_error_naming_it(text in any::<String>()) {
        if let Err(err) = parse_size(&text) {
            prop_assert!(err.to_string().contains(&text));
        }
    }

    #[test]
    fn sizes_round_trip_with_every_unit_in_any_case(
        number in prop_oneof![0u64..100_000, any::<u64>()],
        unit in prop::sample::select(UNITS),
        upper in any::<bool>(),
    ) {
        let (unit, multiplier) = unit;
        let unit = if upper { unit.to_ascii_uppercase() } else { unit.to_ascii_lowercase() };
        let text = format!("{number}{unit}");
        match number.checked_mul(multiplier) {
            Some(bytes) => prop_assert_eq!(parse_size(&text), Ok(bytes), "{}", text),
            None => prop_assert!(parse_size(&text).is_err(), "{}", text),
        }
    }

    #[test]
    fn env_files_round_trip(
        vars in prop::collection::vec(
            ("[A-Za-z_][A-Za-z0-9_]{0,12}", any::<String>(), 0u8..3),
            0..8,
        ),
    ) {
        let mut text = String::from("# written by the property test\n\n");
        let mut expected = Vec::new();
        for (key, value, style) in &vars {
            let written = match style {
                // Single quotes keep everything but a quote and a line break.
                0 if !value.contains(['\'', '\n', '\r']) => format!("'{value}'"),
                // Unquoted: trimmed, and ends at ` #`.
                1 if !value.contains(['\n', '\r', '#', '\'', '"']) => value.clone(),
                _ => double_quoted(value),
            };
            let value = if *style == 1 && written == *value {
                value.trim().to_owned()
            } else {
                value.clone()
            };
            text.push_str(&format!("export {key} = {written}\n"));
            expected.push((key.clone(), value));
        }
        prop_assert_eq!(crate::parse_env_file(&text), Ok(expected), "{}", text);
    }

    #[test]
    fn any_env_file_text_is_read_or_each_error_is_on_a_line_of_it(text in any::<String>()) {
        if let Err(errors) = crate::parse_env_file(&text) {
            let lines: Vec<&str> = text.lines().collect();
            for (line, column, _) in errors {
                prop_assert!(line >= 1 && line <= lines.len());
                prop_assert!(column >= 1 && column <= lines[line - 1].chars().count() + 1);
            }
        }
    }

    #[test]
    fn any_text_is_a_config_or_errors_with_positions(
        text in prop_oneof![
            any::<String>(),
            // Text shaped like a config, so that more of it reaches the checks past TOML.
            "(\\[service\\.[a-z]{1,3}\\]\n([a-z_]{1,12} = (\"[ -~]{0,12}\"|[0-9]{1,4}|true|\\[\"[a-z]{1,3}\"\\]|\\{ [a-z]{1,8} = \"[0-9a-z.:]{0,8}\" \\})\n){0,4}){1,3}",
        ],
    ) {
        match Config::parse(&text, Path::new(NOWHERE)) {
            Ok(config) => {
                let _ = config.start_levels();
            }
            Err(ConfigError::Invalid(diagnostics)) => {
                prop_assert!(!diagnostics.is_empty());
                for diagnostic in diagnostics {
                    prop_assert!(diagnostic.line >= 1 && diagnostic.column >= 1, "{}", diagnostic);
                }
            }
            Err(other) => prop_assert!(false, "{}", other),
        }
    }

    #[test]
    fn a_written_service_reads_back(
        name in "[a-z][a-z0-9_-]{0,10}",
        argv in prop::collection::vec("[a-zA-Z0-9_./=-]{1,10}", 1..4),
        watchdog_ms in 1u64..10_000_000,
        grace_ms in 0u64..1_000_000,
        memory in prop::option::of(1u64..(1 << 40)),
        signal in prop::sample::select(&["TERM", "INT", "HUP", "QUIT", "KILL", "USR1", "USR2"][..]),
    ) {
        let mut text = format!(
            "[service.{name}]\ncommand = [{}]\nwatchdog = \"{watchdog_ms}ms\"\nstop_grace = \"{}\"\nstop_signal = \"SIG{signal}\"\n",
            argv.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", "),
            humantime::format_duration(Duration::from_millis(grace_ms)),
        );
        if let Some(bytes) = memory {
            text.push_str(&format!("memory_limit = \"{bytes}B\"\n"));
        }
        let config = Config::parse(&text, Path::new(NOWHERE));
        prop_assert!(config.is_ok(), "{}\n{:?}", text, config);
        let config = config.expect("checked");
        let service = config.service(&name).expect("the service");
        prop_assert_eq!(&service.command.argv, &argv);
        prop_assert_eq!(service.liveness.watchdog, Some(Duration::from_millis(watchdog_ms)));
        prop_assert_eq!(service.stop_grace, Duration::from_millis(grace_ms));
        prop_assert_eq!(&service.stop_signal, signal);
        prop_assert_eq!(service.memory_limit, memory);
    }
}
