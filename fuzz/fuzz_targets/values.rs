//! The small languages inside the config: durations, sizes, and env files.
#![no_main]

use hangwatch_config::duration::parse_duration;
use hangwatch_config::size::parse_size;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = parse_duration(text) {
        assert!(err.to_string().contains(text));
    }
    if let Err(err) = parse_size(text) {
        assert!(err.to_string().contains(text));
    }
    match hangwatch_config::parse_env_file(text) {
        Ok(vars) => {
            for (key, _) in vars {
                assert!(!key.is_empty() && !key.contains('='), "{key:?}");
            }
        }
        Err(errors) => {
            let lines = text.lines().count();
            for (line, column, _) in errors {
                assert!(line >= 1 && line <= lines && column >= 1, "{line}:{column}");
                let width = text.lines().nth(line - 1).map_or(0, |l| l.chars().count());
                assert!(column <= width + 1, "{line}:{column} past the line's {width}");
            }
        }
    }
});
