//! `hangwatch check`: validate a config file and print every error with its position.
//!
//! Human output: `ok: FILE (N services: a, b)` and the start order on stdout, or one
//! `file:line:column: message` a line on stderr. `--json` prints one object on stdout either way:
//! `{"ok": true, "file", "services", "start_levels"}` or `{"ok": false, "file", "errors": [{"file",
//! "line", "column", "message"}]}` (line and column are 0 when the file could not be read).

use hangwatch_config::{Config, ConfigError};
use hangwatch_protocol::exit_code;
use serde_json::json;

use crate::cli::CheckArgs;

/// 0 when the file is valid, 125 otherwise.
pub fn main(args: &CheckArgs) -> i32 {
    let file = args.file.display().to_string();
    match Config::load(&args.file) {
        Ok(config) => {
            let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
            let levels = config.start_levels();
            if args.json {
                let report = json!({
                    "ok": true,
                    "file": file,
                    "services": names,
                    "start_levels": levels,
                });
                println!("{report}");
            } else {
                let count = names.len();
                let noun = if count == 1 { "service" } else { "services" };
                println!("ok: {file} ({count} {noun}: {})", names.join(", "));
                println!("start order:");
                for (i, level) in levels.iter().enumerate() {
                    println!("  {}. {}", i + 1, level.join(", "));
                }
            }
            0
        }
        Err(err) => {
            if args.json {
                let errors: Vec<_> = match &err {
                    ConfigError::Io { source, .. } => vec![json!({
                        "file": file,
                        "line": 0,
                        "column": 0,
                        "message": format!("cannot read the file: {source}"),
                    })],
                    _ => err
                        .diagnostics()
                        .iter()
                        .map(|d| {
                            json!({
                                "file": d.file.display().to_string(),
                                "line": d.line,
                                "column": d.column,
                                "message": d.message,
                            })
                        })
                        .collect(),
                };
                println!("{}", json!({ "ok": false, "file": file, "errors": errors }));
            } else {
                match &err {
                    ConfigError::Io { source, .. } => {
                        eprintln!("hangwatch: cannot read {file}: {source}");
                    }
                    _ => {
                        let diagnostics = err.diagnostics();
                        for diagnostic in diagnostics {
                            eprintln!("{diagnostic}");
                        }
                        let count = diagnostics.len();
                        let noun = if count == 1 { "error" } else { "errors" };
                        eprintln!("hangwatch: {file} is not a valid config ({count} {noun})");
                    }
                }
            }
            exit_code::HANGWATCH_FAILED
        }
    }
}
