//! `hangwatch check`: a valid file is summarised, an invalid one is refused (125) with each error
//! at its `file:line:column`.

use crate::harness::{Scratch, run};

/// Writes `text` as `hangwatch.toml` in `scratch` and runs `hangwatch check -f` on it.
fn check(scratch: &Scratch, text: &str, json: bool) -> (crate::harness::Finished, String) {
    let path = scratch.file("hangwatch.toml");
    std::fs::write(&path, text).expect("write config");
    let file = path.display().to_string();
    let mut args = vec!["check".to_owned(), "-f".to_owned(), file.clone()];
    if json {
        args.push("--json".to_owned());
    }
    (run(args), file)
}

#[test]
fn a_valid_config_prints_its_services_and_start_order() {
    let scratch = Scratch::new("check-ok");
    let text = r#"
[service.db]
command = ["postgres", "-D", "data"]
ready = { tcp = "127.0.0.1:5432" }

[service.worker]
command = "python worker.py"
depends_on = ["db"]
watchdog = "30s"
heartbeat_file = { path = "worker_status.json", stale_after = "120s" }
restart = "always"
backoff = { initial = "100ms", max = "30s" }
max_restarts = { count = 5, within = "60s" }
stop_signal = "INT"
stop_grace = "10s"
memory_limit = "4GiB"

[service.web]
command = "python -m http.server"
depends_on = ["worker", "db"]

[service.cron]
command = "sleep 1 && date"
shell = true
"#;
    let (done, file) = check(&scratch, text, false);
    assert_eq!(done.code(), 0, "stderr:\n{}", done.stderr);
    assert_eq!(
        done.stdout,
        format!(
            "ok: {file} (4 services: db, worker, web, cron)\nstart order:\n  1. db, cron\n  2. worker\n  3. web\n"
        )
    );
    assert_eq!(done.stderr, "");

    let (done, file) = check(&scratch, text, true);
    assert_eq!(done.code(), 0, "stderr:\n{}", done.stderr);
    let report: serde_json::Value = serde_json::from_str(&done.stdout).expect("JSON on stdout");
    assert_eq!(
        report,
        serde_json::json!({
            "ok": true,
            "file": file,
            "services": ["db", "worker", "web", "cron"],
            "start_levels": [["db", "cron"], ["worker"], ["web"]],
        })
    );
}

#[test]
fn an_unknown_key_is_refused_at_its_position_with_a_suggestion() {
    let scratch = Scratch::new("check-key");
    let (done, file) = check(
        &scratch,
        "[service.web]\ncommand = \"server\"\nrestrat = \"always\"\n",
        false,
    );
    assert_eq!(done.code(), 125);
    assert_eq!(done.stdout, "");
    assert!(
        done.stderr.starts_with(&format!(
            "{file}:3:1: unknown key `restrat` in service `web`; did you mean `restart`?\n"
        )),
        "{}",
        done.stderr
    );
}

#[test]
fn a_dependency_cycle_is_refused_with_its_path() {
    let scratch = Scratch::new("check-cycle");
    let text = "\
[service.a]
command = \"x\"
depends_on = [\"b\"]

[service.b]
command = \"x\"
depends_on = [\"c\"]

[service.c]
command = \"x\"
depends_on = [\"a\"]
";
    let (done, file) = check(&scratch, text, false);
    assert_eq!(done.code(), 125);
    assert!(
        done.stderr.contains(&format!(
            "{file}:11:15: `depends_on` in service `c`: dependency cycle: a -> b -> c -> a\n"
        )),
        "{}",
        done.stderr
    );
}

#[test]
fn every_bad_value_is_reported_and_json_carries_the_positions() {
    let scratch = Scratch::new("check-duration");
    let text = "\
[service.web]
command = \"server\"
stop_grace = \"10 parsecs\"
depends_on = [\"dbb\"]

[service.db]
command = \"db\"
watchdog = \"0s\"
";
    let (done, file) = check(&scratch, text, false);
    assert_eq!(done.code(), 125);
    let lines: Vec<&str> = done.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "three errors and a summary:\n{}",
        done.stderr
    );
    assert!(
        lines[0].starts_with(&format!(
            "{file}:3:14: `stop_grace` in service `web`: invalid duration `10 parsecs`"
        )),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        format!(
            "{file}:4:15: `depends_on` in service `web`: unknown service `dbb`; did you mean `db`?"
        )
    );
    assert_eq!(
        lines[2],
        format!("{file}:8:12: `watchdog` in service `db`: expected a duration above zero")
    );
    assert_eq!(
        lines[3],
        format!("hangwatch: {file} is not a valid config (3 errors)")
    );

    let (done, file) = check(&scratch, text, true);
    assert_eq!(done.code(), 125);
    let report: serde_json::Value = serde_json::from_str(&done.stdout).expect("JSON on stdout");
    assert_eq!(report["ok"], false);
    let positions: Vec<(String, u64, u64)> = report["errors"]
        .as_array()
        .expect("errors array")
        .iter()
        .map(|e| {
            (
                e["file"].as_str().expect("file").to_owned(),
                e["line"].as_u64().expect("line"),
                e["column"].as_u64().expect("column"),
            )
        })
        .collect();
    assert_eq!(
        positions,
        [(file.clone(), 3, 14), (file.clone(), 4, 15), (file, 8, 12)]
    );
}

#[test]
fn a_missing_file_is_refused() {
    let scratch = Scratch::new("check-missing");
    let path = scratch.file("nope.toml");
    let done = run(["check".as_ref(), "-f".as_ref(), path.as_os_str()]);
    assert_eq!(done.code(), 125);
    assert!(
        done.stderr
            .contains(&format!("cannot read {}", path.display())),
        "{}",
        done.stderr
    );
}
