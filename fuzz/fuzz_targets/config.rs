//! The config file: any text is either a config or a list of diagnostics, each at a real
//! position of the text.
#![no_main]

use std::path::Path;

use hangwatch_config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A directory that does not exist: a relative `env_file` fails to read instead of reading
    // whatever sits beside the fuzzer.
    let path = Path::new("/nonexistent/hangwatch-fuzz/hangwatch.toml");
    match Config::parse(text, path) {
        Ok(config) => {
            let _ = config.start_levels();
        }
        Err(ConfigError::Invalid(diagnostics)) => {
            assert!(!diagnostics.is_empty(), "an error without a diagnostic");
            let lines = text.split('\n').count();
            for diagnostic in &diagnostics {
                assert!(diagnostic.line >= 1 && diagnostic.column >= 1, "{diagnostic}");
                if diagnostic.file == path {
                    assert!(diagnostic.line <= lines, "{diagnostic} past the end");
                }
                let _ = diagnostic.to_string();
            }
        }
        Err(other) => {
            let _ = other.to_string();
        }
    }
});
