use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const FILE: &str = "/srv/app/hangwatch.toml";

fn parse(text: &str) -> Config {
    match Config::parse(text, Path::new(FILE)) {
        Ok(config) => config,
        Err(err) => panic!("expected a valid config, got:\n{err}"),
    }
}

/// Every diagnostic as `line:column: message` (the file is always [`FILE`] here).
fn errors(text: &str) -> Vec<String> {
    let err = Config::parse(text, Path::new(FILE)).expect_err("expected an invalid config");
    err.diagnostics()
        .iter()
        .map(|d| {
            assert_eq!(d.file, Path::new(FILE));
            format!("{}:{}: {}", d.line, d.column, d.message)
        })
        .collect()
}

/// The one diagnostic of `text`.
fn error(text: &str) -> String {
    let mut all = errors(text);
    assert_eq!(all.len(), 1, "expected one error, got {all:#?}");
    all.remove(0)
}

fn service(text: &str) -> Service {
    parse(text).services.remove(0)
}

/// A directory of its own under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let path =
            std::env::temp_dir().join(format!("hangwatch-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch dir");
        Scratch(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn defaults_are_what_the_model_documents() {
    let config = parse("[service.web]\ncommand = \"server\"\n");
    assert_eq!(config.path, Path::new(FILE));
    assert_eq!(config.state_dir, Path::new("/srv/app/.hangwatch"));
    assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(config.events_max_size, 8 << 20);
    assert_eq!(config.events_keep, 3);
    let web = &config.services[0];
    let expected = Service {
        name: "web".to_owned(),
        command: Command {
            argv: vec!["server".to_owned()],
            shell: false,
        },
        cwd: PathBuf::from("/srv/app"),
        env: Vec::new(),
        user: None,
        depends_on: Vec::new(),
        restart_with_dependency: false,
        critical: false,
        replica: None,
        ready: Readiness::Started,
        liveness: Liveness::default(),
        restart: RestartPolicy::OnFailure,
        backoff: Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: 0.1,
            reset_after: Duration::from_secs(10),
        },
        max_restarts: MaxRestarts {
            count: 5,
            within: Duration::from_secs(60),
        },
        on_give_up: OnGiveUp::StayDown,
        stop_signal: "TERM".to_owned(),
        stop_grace: Duration::from_secs(10),
        memory_limit: None,
        log_max_size: 10 << 20,
        log_keep: 5,
        diagnose: true,
    };
    assert_eq!(web, &expected);
}

#[test]
fn probe_defaults_differ_for_readiness_and_liveness() {
    let web = service(
        "[service.web]\ncommand = \"s\"\nready = { tcp = \"127.0.0.1:80\" }\nliveness = { http = \"http://127.0.0.1/healthz\" }\n",
    );
    let Readiness::Probe(ready) = web.ready else {
        panic!("expected a readiness probe, got {:?}", web.ready)
    };
    assert_eq!(ready.check, Check::Tcp("127.0.0.1:80".to_owned()));
    assert_eq!(ready.every, Duration::from_millis(100));
    assert_eq!(ready.timeout, Duration::from_secs(1));
    assert_eq!(ready.within, Duration::from_secs(60));
    let live = web.liveness.probe.expect("liveness probe");
    assert_eq!(
        live.check,
        Check::Http("http://127.0.0.1/healthz".to_owned())
    );
    assert_eq!(live.every, Duration::from_secs(1));
    assert_eq!(live.timeout, Duration::from_secs(1));
    assert_eq!(live.failures, 3);
    assert_eq!(live.within, Duration::ZERO);
}

#[test]
fn a_full_example_reads_as_written() {
    let scratch = Scratch::new("full");
    scratch.write("worker.env", "# secrets\nexport TOKEN='abc'\nLEVEL=info\n");
    let text = r#"
state_dir = "/var/lib/hw"
shutdown_timeout = "45s"
events_max_size = "1MiB"
events_keep = 0

[service.db]
command = ["postgres", "-D", "data"]
ready = { tcp = "127.0.0.1:5432", every = "50ms", timeout = "2s", within = "2m" }
stop_signal = "SIGINT"
memory_limit = "4GiB"

[service.worker]
command = "python 'worker main.py' --flag"
cwd = "work"
env_file = "worker.env"
env = { LEVEL = "debug", PORT = 8080, DEBUG = true }
user = "nobody"
depends_on = ["db"]
restart_with_dependency = true
ready = "notify"
watchdog = "30s"
heartbeat_file = { path = "status.json", stale_after = "120s" }
stall_on_silence = 90
liveness = { exec = ["check", "--quick"], every = "5s", timeout = 2.5, failures = 2, within = "10s" }
restart = "always"
backoff = { initial = 0, max = "1m", factor = 1.5, jitter = 0, reset_after = "1h30m" }
max_restarts = { count = 0, within = "5m" }
on_give_up = "shutdown"
stop_signal = 15
stop_grace = "1.5s"
log_max_size = "512MB"
log_keep = 0
diagnose = false

[service.cron]
command = "sleep 1 && date"
shell = true
stop_signal = "usr1"
"#;
    let config = Config::parse(text, &scratch.0.join("hangwatch.toml")).expect("valid config");
    assert_eq!(config.state_dir, Path::new("/var/lib/hw"));
    assert_eq!(config.shutdown_timeout, Duration::from_secs(45));
    assert_eq!(config.events_max_size, 1 << 20);
    assert_eq!(config.events_keep, 0);
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "worker", "cron"], "file order");

    let db = config.service("db").expect("db");
    assert_eq!(db.command.argv, ["postgres", "-D", "data"]);
    assert_eq!(db.stop_signal, "INT");
    assert_eq!(db.memory_limit, Some(4 << 30));
    assert_eq!(
        db.ready,
        Readiness::Probe(Probe {
            check: Check::Tcp("127.0.0.1:5432".to_owned()),
            every: Duration::from_millis(50),
            timeout: Duration::from_secs(2),
            failures: 3,
            within: Duration::from_secs(120),
        })
    );

    let worker = config.service("worker").expect("worker");
    assert_eq!(
        worker.command,
        Command {
            argv: vec!["python".into(), "worker main.py".into(), "--flag".into()],
            shell: false
        }
    );
    assert_eq!(worker.cwd, scratch.0.join("work"));
    let env: Vec<(&str, &str)> = worker
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("TOKEN", "abc"),
            ("LEVEL", "debug"),
            ("PORT", "8080"),
            ("DEBUG", "true")
        ],
        "env_file first, env overrides in place"
    );
    assert_eq!(worker.user.as_deref(), Some("nobody"));
    assert_eq!(worker.depends_on, ["db"]);
    assert!(worker.restart_with_dependency);
    assert_eq!(worker.ready, Readiness::Notify);
    assert_eq!(worker.liveness.watchdog, Some(Duration::from_secs(30)));
    assert_eq!(
        worker.liveness.heartbeat_file,
        Some((scratch.0.join("work/status.json"), Duration::from_secs(120))),
        "heartbeat path resolved against the service's cwd"
    );
    assert_eq!(
        worker.liveness.stall_on_silence,
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        worker.liveness.probe,
        Some(Probe {
            check: Check::Exec(Command {
                argv: vec!["check".into(), "--quick".into()],
                shell: false
            }),
            every: Duration::from_secs(5),
            timeout: Duration::from_millis(2500),
            failures: 2,
            within: Duration::from_secs(10),
        })
    );
    assert_eq!(worker.restart, RestartPolicy::Always);
    assert_eq!(
        worker.backoff,
        Backoff {
            initial: Duration::ZERO,
            max: Duration::from_secs(60),
            factor: 1.5,
            jitter: 0.0,
            reset_after: Duration::from_secs(5400),
        }
    );
    assert_eq!(
        worker.max_restarts,
        MaxRestarts {
            count: 0,
            within: Duration::from_secs(300)
        }
    );
    assert_eq!(worker.on_give_up, OnGiveUp::Shutdown);
    assert_eq!(worker.stop_signal, "15");
    assert_eq!(worker.stop_grace, Duration::from_millis(1500));
    assert_eq!(worker.log_max_size, 512_000_000);
    assert_eq!(worker.log_keep, 0);
    assert!(!worker.diagnose);

    let cron = config.service("cron").expect("cron");
    assert_eq!(
        cron.command,
        Command {
            argv: vec!["/bin/sh".into(), "-c".into(), "sleep 1 && date".into()],
            shell: true
        }
    );
    assert_eq!(cron.stop_signal, "USR1");
    assert_eq!(
        config.start_levels(),
        [
            vec!["db".to_owned(), "cron".to_owned()],
            vec!["worker".to_owned()]
        ]
    );
}

#[test]
fn commands_split_like_a_posix_shell_without_expansion() {
    let argv = |command: &str| {
        service(&format!("[service.a]\ncommand = '''{command}'''\n"))
            .command
            .argv
    };
    assert_eq!(argv("python worker.py"), ["python", "worker.py"]);
    assert_eq!(argv("  a   b\tc "), ["a", "b", "c"]);
    assert_eq!(
        argv(r#"echo "a b" 'c d' e\ f"#),
        ["echo", "a b", "c d", "e f"]
    );
    assert_eq!(argv(r#"echo "x\"y" 'it''s'"#), ["echo", "x\"y", "its"]);
    assert_eq!(argv("echo $HOME ~ *.py"), ["echo", "$HOME", "~", "*.py"]);
    assert_eq!(
        argv("serve --port 80 # the public one"),
        ["serve", "--port", "80"]
    );
    assert_eq!(argv("echo a#b"), ["echo", "a#b"]);
    assert_eq!(
        error("[service.a]\ncommand = \"echo 'open\"\n"),
        "2:11: `command` in service `a`: cannot split `echo 'open` into words: a quote is not closed or a backslash ends it"
    );
}

#[test]
fn empty_commands_are_rejected() {
    for (command, column) in [("\"\"", 11), ("\"   \"", 11), ("[]", 11)] {
        assert_eq!(
            error(&format!("[service.a]\ncommand = {command}\n")),
            format!(
                "2:{column}: `command` in service `a`: empty command: expected a program to run"
            )
        );
    }
    assert_eq!(
        error("[service.a]\ncommand = \" \"\nshell = true\n"),
        "2:11: `command` in service `a`: empty command: expected a program to run"
    );
    assert_eq!(
        error("[service.a]\ncommand = [\"\", \"x\"]\n"),
        "2:11: `command` in service `a`: the program name is empty"
    );
}

#[test]
fn command_errors_name_what_was_expected() {
    assert_eq!(
        error("[service.a]\n"),
        "1:10: service `a` has no `command`: expected `command = [\"program\", \"arg\"]` or `command = \"program arg\"`"
    );
    assert_eq!(
        error("[service.a]\ncommand = [\"x\", 1]\n"),
        "2:17: `command` in service `a`: expected every argument to be a string, found an integer"
    );
    assert_eq!(
        error("[service.a]\ncommand = 5\n"),
        "2:11: `command` in service `a`: expected a command: an array like [\"program\", \"arg\"] or a string like \"program arg\", found an integer"
    );
    assert_eq!(
        error("[service.a]\ncommand = [\"sh\", \"-c\", \"x\"]\nshell = true\n"),
        "2:11: `command` in service `a`: `shell = true` runs one string with /bin/sh -c: expected a string, found an array"
    );
}

#[test]
fn toml_syntax_errors_have_their_position() {
    assert_eq!(
        error("[service.a]\ncommand = \"x\"\nstop_grace = \n"),
        "3:14: invalid TOML: string values must be quoted, expected literal string"
    );
    assert_eq!(
        error("[service.a\ncommand = \"x\"\n"),
        "1:11: invalid TOML: unclosed table, expected `]`"
    );
    assert_eq!(
        error("[service.a]\ncommand = \"x\"\ncommand = \"y\"\n"),
        "3:1: invalid TOML: duplicate key"
    );
}

#[test]
fn unknown_keys_suggest_the_nearest_valid_one() {
    let text = "\
statedir = \"x\"
[service.web]
command = \"x\"
restrat = \"always\"
colour = 1
backoff = { intial = \"1s\" }
liveness = { tcp = \"h:1\", failure = 2 }
ready = { tcp = \"h:1\", failures = 2 }
heartbeat_file = { path = \"p\", stale = \"1s\" }
max_restarts = { count = 1, whithin = \"1m\" }
";
    assert_eq!(
        errors(text),
        [
            "1:1: unknown key `statedir` at the top level; did you mean `state_dir`?",
            "4:1: unknown key `restrat` in service `web`; did you mean `restart`?",
            "5:1: unknown key `colour` in service `web`",
            "6:13: unknown key `intial` in `backoff` of service `web`; did you mean `initial`?",
            "7:27: unknown key `failure` in `liveness` of service `web`; did you mean `failures`?",
            "8:24: unknown key `failures` in `ready` of service `web`",
            "9:18: `heartbeat_file` in service `web`: no `stale_after`: expected { path = \"status.json\", stale_after = \"120s\" }",
            "9:32: unknown key `stale` in `heartbeat_file` of service `web`; did you mean `stale_after`?",
            "10:29: unknown key `whithin` in `max_restarts` of service `web`; did you mean `within`?",
        ]
    );
    // `[services.x]` is a common slip.
    assert_eq!(
        errors("[services.web]\ncommand = \"x\"\n"),
        [
            "1:1: no services: expected at least one `[service.NAME]` table with a `command`",
            "1:2: unknown key `services` at the top level; did you mean `service`?",
        ]
    );
}

#[test]
fn wrong_types_say_what_was_expected_and_found() {
    let text = "\
shutdown_timeout = true
[service.web]
command = \"x\"
shell = \"yes\"
depends_on = \"db\"
env = [\"A=1\"]
diagnose = 1
log_keep = \"5\"
backoff = \"1s\"
user = []
";
    assert_eq!(
        errors(text),
        [
            "1:20: `shutdown_timeout`: expected a duration like \"90s\", \"5m\", \"1h30m\", \"250ms\" or a number of seconds, found a boolean",
            "4:9: `shell` in service `web`: expected `true` or `false`, found a string",
            "5:14: `depends_on` in service `web`: expected an array of service names like [\"db\"], found a string",
            "6:7: `env` in service `web`: expected a table like `{ RUST_LOG = \"debug\" }`, found an array",
            "7:12: `diagnose` in service `web`: expected `true` or `false`, found an integer",
            "8:12: `log_keep` in service `web`: expected a whole number of at least 0, found a string",
            "9:11: `backoff` in service `web`: expected a table like `{ initial = \"100ms\", max = \"30s\" }`, found a string",
            "10:8: `user` in service `web`: expected a user name or uid, found an array",
        ]
    );
    assert_eq!(
        error("service = 1\n"),
        "1:11: `service`: expected tables like `[service.web]`, found an integer"
    );
    assert_eq!(
        error("[service]\nweb = \"x\"\n"),
        "2:7: service `web`: expected a table like `[service.web]` with a `command`, found a string"
    );
}

#[test]
fn bad_durations_sizes_signals_and_policies() {
    let text = "\
[service.web]
command = \"x\"
stop_grace = \"10x\"
watchdog = \"0s\"
memory_limit = \"4 parsecs\"
log_max_size = 0
stop_signal = \"TERMINATE\"
restart = \"on_failure\"
on_give_up = \"exit\"
";
    let all = errors(text);
    assert_eq!(all.len(), 7, "{all:#?}");
    assert!(
        all[0].starts_with("3:14: `stop_grace` in service `web`: invalid duration `10x`: "),
        "{}",
        all[0]
    );
    assert!(
        all[0].ends_with("(examples: 90s, 5m, 1h30m, 250ms, 1.5s)"),
        "{}",
        all[0]
    );
    assert_eq!(
        all[1],
        "4:12: `watchdog` in service `web`: expected a duration above zero"
    );
    assert_eq!(
        all[2],
        "5:16: `memory_limit` in service `web`: invalid size `4 parsecs`: unknown unit (expected B, kB, MB, GB, TB, KiB, MiB, GiB, TiB, k, M, G or T) (examples: 4GiB, 512MB, 512MiB, 100k, 65536)"
    );
    assert_eq!(
        all[3],
        "6:16: `log_max_size` in service `web`: expected a size above zero"
    );
    assert_eq!(
        all[4],
        "7:15: `stop_signal` in service `web`: expected a signal name (TERM, INT, HUP, QUIT, KILL, USR1, USR2, with or without SIG) or a number from 1 to 64, found `TERMINATE`; did you mean `TERM`?"
    );
    assert_eq!(
        all[5],
        "8:11: `restart` in service `web`: expected `always`, `on-failure` or `never`, found `on_failure`; did you mean `on-failure`?"
    );
    assert_eq!(
        all[6],
        "9:14: `on_give_up` in service `web`: expected `stay-down` or `shutdown`, found `exit`"
    );
    assert_eq!(
        error("[service.a]\ncommand = \"x\"\nstop_signal = 65\n"),
        "3:15: `stop_signal` in service `a`: expected a signal name (TERM, INT, HUP, QUIT, KILL, USR1, USR2, with or without SIG) or a number from 1 to 64, found `65`"
    );
    assert_eq!(
        error("[service.a]\ncommand = \"x\"\nstop_grace = -1\n"),
        "3:14: `stop_grace` in service `a`: expected a duration, found the negative number -1"
    );
}

#[test]
fn numbers_are_seconds_and_bytes() {
    let web = service(
        "[service.a]\ncommand = \"x\"\nstop_grace = 3\nwatchdog = 0.25\nmemory_limit = 1048576\n",
    );
    assert_eq!(web.stop_grace, Duration::from_secs(3));
    assert_eq!(web.liveness.watchdog, Some(Duration::from_millis(250)));
    assert_eq!(web.memory_limit, Some(1 << 20));
}

#[test]
fn probes_need_exactly_one_valid_check() {
    let text = "\
[service.a]
command = \"x\"
ready = { every = \"1s\" }
liveness = { tcp = \"h:1\", http = \"http://h/\" }
[service.b]
command = \"x\"
ready = { tcp = \"localhost\" }
liveness = { http = \"https://h/\" }
[service.c]
command = \"x\"
ready = \"notfy\"
liveness = { exec = \"\", failures = 0 }
";
    assert_eq!(
        errors(text),
        [
            "3:9: `ready` in service `a`: expected one check: `tcp = \"host:port\"`, `http = \"http://host:port/path\"` or `exec = command`",
            "4:27: `liveness` in service `a`: expected one check, found both `tcp` and `http`",
            "7:17: `ready.tcp` in service `b`: expected `host:port` like \"127.0.0.1:5432\", found `localhost`",
            "8:21: `liveness.http` in service `b`: expected an URL like \"http://127.0.0.1:8080/healthz\", found `https://h/` (https is not supported)",
            "11:9: `ready` in service `c`: expected \"notify\", \"started\" or a probe like { tcp = \"127.0.0.1:5432\" }, found `notfy`; did you mean `notify`?",
            "12:21: `liveness.exec` in service `c`: empty command: expected a program to run",
            "12:36: `liveness.failures` in service `c`: expected a whole number from 1 to 4294967295, found 0",
        ]
    );
}

#[test]
fn heartbeat_file_needs_stale_after() {
    assert_eq!(
        error("[service.a]\ncommand = \"x\"\nheartbeat_file = { path = \"s.json\" }\n"),
        "3:18: `heartbeat_file` in service `a`: no `stale_after`: expected { path = \"status.json\", stale_after = \"120s\" }"
    );
    assert_eq!(
        error("[service.a]\ncommand = \"x\"\nheartbeat_file = \"s.json\"\n"),
        "3:18: `heartbeat_file` in service `a`: expected a table like `{ path = \"status.json\", stale_after = \"120s\" }`, found a string"
    );
}

#[test]
fn backoff_and_restart_limits_are_checked() {
    let text = "\
[service.a]
command = \"x\"
backoff = { initial = \"10s\", max = \"1s\" }
[service.b]
command = \"x\"
backoff = { factor = 0.5, jitter = 2 }
max_restarts = { count = -1, within = 0 }
";
    assert_eq!(
        errors(text),
        [
            "3:36: `backoff` in service `a`: `max` (1s) is below `initial` (10s): expected max >= initial",
            "6:22: `backoff.factor` in service `b`: expected a number from 1 to 1000, found 0.5",
            "6:36: `backoff.jitter` in service `b`: expected a fraction from 0 to 1, found 2",
            "7:26: `max_restarts.count` in service `b`: expected a whole number from 0 to 4294967295, found -1",
            "7:39: `max_restarts.within` in service `b`: expected a duration above zero",
        ]
    );
}

#[test]
fn service_names_allow_letters_digits_dash_underscore_dot() {
    let config =
        parse("[service.\"api.v2\"]\ncommand = \"x\"\n[service.Worker_1-b]\ncommand = \"x\"\n");
    assert_eq!(config.services[0].name, "api.v2");
    assert_eq!(config.services[1].name, "Worker_1-b");
    assert_eq!(
        error("[service.\"my web\"]\ncommand = \"x\"\n"),
        "1:10: invalid service name `my web`: ` ` is not allowed (expected letters, digits, `-`, `_` and `.`)"
    );
    assert_eq!(
        error("[service.\"a/b\"]\ncommand = \"x\"\n"),
        "1:10: invalid service name `a/b`: `/` is not allowed (expected letters, digits, `-`, `_` and `.`)"
    );
}

#[test]
fn dependencies_must_name_other_services() {
    let text = "\
[service.db]
command = \"x\"
[service.web]
command = \"x\"
depends_on = [\"dbb\", \"web\", \"db\", \"db\", \"cache\"]
";
    assert_eq!(
        errors(text),
        [
            "5:15: `depends_on` in service `web`: unknown service `dbb`; did you mean `db`?",
            "5:22: `depends_on` in service `web`: service `web` depends on itself",
            "5:35: `depends_on` in service `web`: `db` is listed twice",
            "5:41: `depends_on` in service `web`: unknown service `cache`",
        ]
    );
}

#[test]
fn cycles_are_reported_with_their_path_where_they_close() {
    let text = "\
[service.a]
command = \"x\"
depends_on = [\"b\"]
[service.b]
command = \"x\"
depends_on = [\"c\"]
[service.c]
command = \"x\"
depends_on = [\"d\", \"a\"]
[service.d]
command = \"x\"
[service.e]
command = \"x\"
depends_on = [\"f\"]
[service.f]
command = \"x\"
depends_on = [\"e\"]
";
    assert_eq!(
        errors(text),
        [
            "9:20: `depends_on` in service `c`: dependency cycle: a -> b -> c -> a",
            "17:15: `depends_on` in service `f`: dependency cycle: e -> f -> e",
        ]
    );
}

#[test]
fn thousands_of_unknown_dependencies_are_all_reported_and_only_the_first_get_hints() {
    // Each hint compares the name with every service: with a hint for each of 2000 unknown
    // names, checking this file took seconds (minutes in a debug build), past the fuzzer's bound.
    let text: String = (0..2000)
        .map(|i| {
            format!(
                "[service.s{i}]\ncommand = \"x\"\ndepends_on = [\"t{}\"]\n",
                i + 1
            )
        })
        .collect();
    let found = errors(&text);
    assert_eq!(found.len(), 2000);
    assert!(
        found[0].ends_with("unknown service `t1`; did you mean `s1`?"),
        "{}",
        found[0]
    );
    let hinted = found.iter().filter(|e| e.contains("did you mean")).count();
    assert_eq!(hinted, UNKNOWN_SERVICE_HINTS);
    assert!(
        found[1999].ends_with("unknown service `t2000`"),
        "{}",
        found[1999]
    );
}

#[test]
fn errors_in_broken_services_do_not_hide_dependency_errors() {
    let text = "\
[service.a]
command = \"x\"
stop_grace = \"soon\"
depends_on = [\"nope\"]
[service.b]
command = \"x\"
depends_on = [\"a\"]
";
    let all = errors(text);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all[0].starts_with("3:14: `stop_grace`"), "{}", all[0]);
    assert_eq!(
        all[1],
        "4:15: `depends_on` in service `a`: unknown service `nope`"
    );
}

#[test]
fn a_config_without_services_is_an_error() {
    let expected =
        "1:1: no services: expected at least one `[service.NAME]` table with a `command`";
    assert_eq!(error(""), expected);
    assert_eq!(error("shutdown_timeout = \"5s\"\n[service]\n"), expected);
}

#[test]
fn user_is_only_checked_for_being_non_empty() {
    assert_eq!(
        service("[service.a]\ncommand = \"x\"\nuser = 1000\n")
            .user
            .as_deref(),
        Some("1000")
    );
    assert_eq!(
        error("[service.a]\ncommand = \"x\"\nuser = \" \"\n"),
        "3:8: `user` in service `a`: expected a user name or uid, found an empty string"
    );
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let config = parse(
        "state_dir = \"run/state\"\n[service.a]\ncommand = \"x\"\ncwd = \"../a\"\nheartbeat_file = { path = \"hb\", stale_after = \"1s\" }\n[service.b]\ncommand = \"x\"\ncwd = \"/opt/b\"\n",
    );
    assert_eq!(config.state_dir, Path::new("/srv/app/run/state"));
    assert_eq!(config.services[0].cwd, Path::new("/srv/app/../a"));
    assert_eq!(
        config.services[0].liveness.heartbeat_file,
        Some((PathBuf::from("/srv/app/../a/hb"), Duration::from_secs(1)))
    );
    assert_eq!(config.services[1].cwd, Path::new("/opt/b"));

    // A relative config path is made absolute against the current directory.
    let config =
        Config::parse("[service.a]\ncommand = \"x\"\n", Path::new("sub/hw.toml")).expect("valid");
    let cwd = std::env::current_dir().expect("current dir");
    assert_eq!(config.path, cwd.join("sub/hw.toml"));
    assert_eq!(config.state_dir, cwd.join("sub/.hangwatch"));
    assert_eq!(config.services[0].cwd, cwd.join("sub"));
}

#[test]
fn env_file_errors_name_the_env_file_and_its_line() {
    let scratch = Scratch::new("envfile");
    scratch.write("app.env", "GOOD=1\nthis is not a pair\nQUOTED=\"open\n");
    let config_path = scratch.0.join("hangwatch.toml");
    let text = "[service.a]\ncommand = \"x\"\nenv_file = \"app.env\"\n[service.b]\ncommand = \"x\"\nenv_file = \"missing.env\"\n";
    let err = Config::parse(text, &config_path).expect_err("invalid");
    let shown: Vec<String> = err.diagnostics().iter().map(ToString::to_string).collect();
    let env_path = scratch.0.join("app.env");
    assert_eq!(shown.len(), 3, "{shown:#?}");
    assert_eq!(
        shown[0],
        format!(
            "{}:6:12: `env_file` in service `b`: cannot read `missing.env`: No such file or directory (os error 2)",
            config_path.display()
        )
    );
    assert_eq!(
        shown[1],
        format!(
            "{}:2:1: expected `KEY=VALUE` (env_file of service `a`)",
            env_path.display()
        )
    );
    assert_eq!(
        shown[2],
        format!(
            "{}:3:8: unterminated double quote (a quoted value ends on its line) (env_file of service `a`)",
            env_path.display()
        )
    );
}

#[test]
fn an_env_file_that_is_not_a_regular_file_or_too_large_is_refused_unread() {
    // `/dev/zero` would be read forever and a FIFO would block the check until written to.
    let scratch = Scratch::new("envfile-kinds");
    let big = scratch.write("big.env", &"A=1\n".repeat((1 << 20) / 4 + 1));
    let fifo = scratch.0.join("fifo.env");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    let text = format!(
        "[service.a]\ncommand = \"x\"\nenv_file = \"/dev/zero\"\n[service.b]\ncommand = \"x\"\nenv_file = \"{}\"\n[service.c]\ncommand = \"x\"\nenv_file = \"{}\"\n[service.d]\ncommand = \"x\"\nenv_file = \"{}\"\n",
        scratch.0.display(),
        big.display(),
        fifo.display(),
    );
    let err = Config::parse(&text, Path::new(FILE)).expect_err("invalid");
    let shown: Vec<String> = err.diagnostics().iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 4, "{shown:#?}");
    assert!(
        shown[3].ends_with("fifo.env`: not a regular file"),
        "{shown:#?}"
    );
    assert!(
        shown[0].ends_with("cannot read `/dev/zero`: not a regular file"),
        "{shown:#?}"
    );
    assert!(shown[1].ends_with(": not a regular file"), "{shown:#?}");
    assert!(
        shown[2].ends_with(": larger than 1048576 bytes"),
        "{shown:#?}"
    );
}

#[test]
fn a_nul_in_an_argument_or_an_env_value_is_refused_at_its_position() {
    // `execve` takes C strings: a NUL would cut the argument or the variable short.
    let found =
        errors("[service.a]\ncommand = [\"x\", \"a\\u0000b\"]\nenv = { K = \"v\\u0000w\" }\n");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with("2:") && found[0].contains("contains a NUL character"),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("3:") && found[1].contains("`K` contains a NUL character"),
        "{found:#?}"
    );
}

#[test]
fn env_values_may_be_numbers_and_booleans() {
    let a = service(
        "[service.a]\ncommand = \"x\"\nenv = { A = \"s\", B = 0x10, C = 1.5, D = false }\n",
    );
    let env: Vec<(&str, &str)> = a
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [("A", "s"), ("B", "0x10"), ("C", "1.5"), ("D", "false")]
    );
    assert_eq!(
        error("[service.a]\ncommand = \"x\"\nenv = { A = [1] }\n"),
        "3:13: `env.A` in service `a`: expected a string, found an array"
    );
}

#[test]
fn load_reads_the_file_and_reports_io_errors() {
    let scratch = Scratch::new("load");
    let path = scratch.write("hw.toml", "[service.a]\ncommand = \"x\"\n");
    let config = Config::load(&path).expect("valid");
    assert_eq!(config.path, path);
    assert_eq!(config.state_dir, scratch.0.join(".hangwatch"));

    let missing = scratch.0.join("missing.toml");
    let err = Config::load(&missing).expect_err("missing");
    assert!(
        matches!(&err, ConfigError::Io { path, .. } if *path == missing),
        "{err:?}"
    );
    assert!(err.diagnostics().is_empty());
}

#[test]
fn start_levels_group_by_dependency_depth_in_file_order() {
    let config = parse(
        "[service.web]\ncommand = \"x\"\ndepends_on = [\"api\", \"cache\"]\n[service.api]\ncommand = \"x\"\ndepends_on = [\"db\"]\n[service.db]\ncommand = \"x\"\n[service.cache]\ncommand = \"x\"\n[service.cron]\ncommand = \"x\"\n",
    );
    assert_eq!(
        config.start_levels(),
        [
            vec!["db".to_owned(), "cache".to_owned(), "cron".to_owned()],
            vec!["api".to_owned()],
            vec!["web".to_owned()],
        ]
    );
}

#[test]
fn start_levels_survive_a_hand_made_cycle() {
    let mut config = parse(
        "[service.a]\ncommand = \"x\"\n[service.b]\ncommand = \"x\"\n[service.c]\ncommand = \"x\"\n",
    );
    config.services[0].depends_on = vec!["b".into()];
    config.services[1].depends_on = vec!["a".into(), "ghost".into()];
    assert_eq!(
        config.start_levels(),
        [vec!["c".to_owned()], vec!["a".to_owned(), "b".to_owned()]]
    );
}

#[test]
fn event_log_rotation_keys_are_checked() {
    let text = "\
events_max_size = 0
events_keep = -1
[service.a]
command = \"x\"
";
    assert_eq!(
        errors(text),
        [
            "1:19: `events_max_size`: expected a size above zero",
            "2:15: `events_keep`: expected a whole number from 0 to 4294967295, found -1",
        ]
    );
}

#[test]
fn replicas_are_numbered_copies_and_a_dependency_on_them_is_on_every_copy() {
    let config = parse(
        r#"
[service.worker]
command = "python3 worker.py"
env = { HANGWATCH_REPLICA = "ignored" }
replicas = 3

[service.api]
command = "api"
depends_on = ["worker"]
"#,
    );
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["worker.1", "worker.2", "worker.3", "api"]);
    for (i, copy) in config.services[..3].iter().enumerate() {
        let index = u32::try_from(i).expect("small") + 1;
        assert_eq!(
            copy.replica,
            Some(Replica {
                group: "worker".into(),
                index,
                of: 3
            })
        );
        let replica: Vec<&str> = copy
            .env
            .iter()
            .filter(|(k, _)| k == "HANGWATCH_REPLICA")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(
            replica,
            [index.to_string().as_str()],
            "the copy's number wins"
        );
    }
    assert_eq!(config.services[3].replica, None);
    assert_eq!(
        config.services[3].depends_on,
        ["worker.1", "worker.2", "worker.3"]
    );
    // `replicas = 1` is one copy, still named as a copy.
    let one = parse("[service.w]\ncommand = \"x\"\nreplicas = 1\n");
    assert_eq!(one.services[0].name, "w.1");
}

#[test]
fn bad_replicas_are_refused_with_their_position() {
    assert_eq!(
        error("[service.w]\ncommand = \"x\"\nreplicas = 0\n"),
        "3:12: `replicas` in service `w`: expected a whole number from 1 to 4294967295, found 0"
    );
    assert_eq!(
        error("[service.w]\ncommand = \"x\"\nreplicas = 1001\n"),
        "3:12: `replicas` in service `w`: expected at most 1000 copies, found 1001"
    );
    let clash =
        error("[service.w]\ncommand = \"x\"\nreplicas = 2\n\n[service.\"w.2\"]\ncommand = \"y\"\n");
    assert!(clash.contains("`w.2` is declared"), "{clash}");
}

#[test]
fn http_is_off_unless_asked() {
    let config = parse("[service.a]\ncommand = \"x\"\n");
    assert_eq!(config.http, None);
}

#[test]
fn http_on_loopback_needs_no_token() {
    let config = parse("http = \"127.0.0.1:9464\"\n[service.a]\ncommand = \"x\"\n");
    let http = config.http.expect("http on");
    assert_eq!(http.listen, "127.0.0.1:9464".parse().expect("address"));
    assert_eq!(http.token_file, None);
    let config = parse("http = \"[::1]:0\"\n[service.a]\ncommand = \"x\"\n");
    assert!(config.http.expect("http on").listen.ip().is_loopback());
}

#[test]
fn http_elsewhere_needs_a_token_file() {
    assert_eq!(
        error("http = \"0.0.0.0:9464\"\n[service.a]\ncommand = \"x\"\n"),
        "1:8: `http`: 0.0.0.0:9464 is not a loopback address, so `http_token_file` is required (every request must then carry `Authorization: Bearer TOKEN`)"
    );
    let config = Config::parse(
        "http = \"0.0.0.0:9464\"\nhttp_token_file = \"secret/token\"\n[service.a]\ncommand = \"x\"\n",
        Path::new("/srv/app/hangwatch.toml"),
    )
    .expect("valid config");
    let http = config.http.expect("http on");
    assert_eq!(
        http.token_file.as_deref(),
        Some(Path::new("/srv/app/secret/token"))
    );
}

#[test]
fn http_open_names_paths_served_without_the_token() {
    let config = parse(
        "http = \"0.0.0.0:9464\"\nhttp_token_file = \"t\"\nhttp_open = [\"/healthz\", \"/readyz\", \"/healthz\"]\n[service.a]\ncommand = \"x\"\n",
    );
    let http = config.http.expect("http on");
    assert_eq!(http.open, [HttpOpen::Healthz, HttpOpen::Readyz]);
    assert_eq!(
        errors(
            "http = \"0.0.0.0:9464\"\nhttp_token_file = \"t\"\nhttp_open = [\"/healthz\", \"/api/status\", \"/readz\"]\n[service.a]\ncommand = \"x\"\n"
        ),
        [
            "3:26: `http_open`: expected one of /healthz, /readyz, /metrics (the JSON API and the page always need the token)",
            "3:41: `http_open`: expected one of /healthz, /readyz, /metrics (the JSON API and the page always need the token); did you mean `/readyz`?",
        ]
    );
    assert_eq!(
        error("http_open = [\"/healthz\"]\n[service.a]\ncommand = \"x\"\n"),
        "1:13: `http_open` is set but `http` is not: add `http = \"ADDRESS:PORT\"`"
    );
}

#[test]
fn http_errors_name_their_place() {
    assert_eq!(
        errors("http = \"localhost\"\nhttp_token_file = 3\n[service.a]\ncommand = \"x\"\n"),
        [
            "1:8: `http`: expected an address and port like \"127.0.0.1:9464\" or \"[::1]:9464\", found \"localhost\"",
            "2:19: `http_token_file`: expected a string, found an integer",
        ]
    );
    assert_eq!(
        error("http_token_file = \"t\"\n[service.a]\ncommand = \"x\"\n"),
        "1:19: `http_token_file` is set but `http` is not: add `http = \"ADDRESS:PORT\"`"
    );
}

#[test]
fn alerts_read_with_their_defaults() {
    let config = parse(
        "[[alert]]\non = [\"stalled\", \"gave-up\"]\ncommand = \"./notify.sh --loud\"\n\n[[alert]]\nname = \"pager\"\non = [\"restarting\"]\ncommand = [\"page\"]\nservices = [\"a\"]\ntimeout = \"2s\"\nrate = { count = 2 }\nrestarts = { count = 5, within = \"1m\" }\n[service.a]\ncommand = \"x\"\n",
    );
    assert_eq!(config.alerts.len(), 2);
    let first = &config.alerts[0];
    assert_eq!(first.name, "alert-1");
    assert_eq!(first.on, [AlertOn::Stalled, AlertOn::GaveUp]);
    assert_eq!(first.command.argv, ["./notify.sh", "--loud"]);
    assert_eq!(first.timeout, Duration::from_secs(10));
    assert_eq!(first.rate.count, 10);
    let pager = &config.alerts[1];
    assert_eq!(pager.name, "pager");
    assert_eq!(pager.services, ["a"]);
    assert_eq!(pager.timeout, Duration::from_secs(2));
    assert_eq!(pager.rate.count, 2);
    assert_eq!(pager.rate.within, Duration::from_secs(60));
    assert_eq!(pager.restarts.count, 5);
}

#[test]
fn alert_errors_name_their_place() {
    assert_eq!(
        errors(
            "[[alert]]\non = [\"stalld\"]\ncommand = \"x\"\ncolour = 1\n[[alert]]\ncommand = \"x\"\n[service.a]\ncommand = \"x\"\n"
        ),
        [
            "2:7: `alert[1].on`: expected one of stalled, incident, gave-up, leak, down, restarting; did you mean `stalled`?",
            "4:1: unknown key `colour` in `[[alert]]` number 1",
            "5:1: `[[alert]]` number 2: no `on`: expected the events that run it, like on = [\"stalled\", \"gave-up\"]",
        ]
    );
}

#[test]
fn stall_warn_is_read_and_must_come_before_every_stall_bound() {
    let worker = service(
        "[service.worker]\ncommand = \"w\"\nwatchdog = \"10s\"\nstall_on_silence = \"60s\"\nstall_warn = \"5s\"\n",
    );
    assert_eq!(worker.liveness.stall_warn, Some(Duration::from_secs(5)));
    assert_eq!(
        error(
            "[service.worker]\ncommand = \"w\"\nwatchdog = \"10s\"\nstall_on_silence = \"3s\"\nstall_warn = \"5s\"\n"
        ),
        "5:14: `stall_warn` in service `worker`: 5s is not below `stall_on_silence` (3s): a warning must come before the stall"
    );
    assert_eq!(
        error("[service.worker]\ncommand = \"w\"\nstall_warn = \"5s\"\n"),
        "3:14: `stall_warn` in service `worker`: warns of nothing: the service has no `watchdog`, `heartbeat_file` or `stall_on_silence`"
    );
}

#[test]
fn stall_defer_under_pressure_takes_a_bound_or_a_table() {
    let short = service(
        "[service.worker]\ncommand = \"w\"\nwatchdog = \"10s\"\nstall_defer_under_pressure = \"30s\"\n",
    );
    assert_eq!(
        short.liveness.stall_defer,
        Some(crate::StallDefer {
            up_to: Duration::from_secs(30),
            above_pct: crate::StallDefer::ABOVE,
        })
    );
    let table = service(
        "[service.worker]\ncommand = \"w\"\nwatchdog = \"10s\"\nstall_defer_under_pressure = { up_to = \"1m\", above = \"0%\" }\n",
    );
    assert_eq!(
        table.liveness.stall_defer,
        Some(crate::StallDefer {
            up_to: Duration::from_secs(60),
            above_pct: 0.0,
        })
    );
    let number = service(
        "[service.worker]\ncommand = \"w\"\nwatchdog = \"10s\"\nstall_defer_under_pressure = { up_to = 5, above = 60 }\n",
    );
    assert_eq!(number.liveness.stall_defer.map(|d| d.above_pct), Some(60.0));
    assert_eq!(
        service("[service.worker]\ncommand = \"w\"\n")
            .liveness
            .stall_defer,
        None
    );
    assert_eq!(
        error(
            "[service.worker]\ncommand = \"w\"\nwatchdog = \"10s\"\nstall_defer_under_pressure = { up_to = \"30s\", above = \"120%\" }\n"
        ),
        "4:55: `stall_defer_under_pressure.above` in service `worker`: expected a percentage from 0 to 100 like \"25%\", found \"120%\""
    );
    assert_eq!(
        errors(
            "[service.worker]\ncommand = \"w\"\nwatchdog = \"10s\"\nstall_defer_under_pressure = { above = \"5%\", upto = \"1s\" }\n"
        ),
        [
            "4:30: `stall_defer_under_pressure` in service `worker`: no `up_to`: expected { up_to = \"30s\", above = \"25%\" }",
            "4:46: unknown key `upto` in `stall_defer_under_pressure` of service `worker`; did you mean `up_to`?",
        ]
    );
    assert_eq!(
        error("[service.worker]\ncommand = \"w\"\nstall_defer_under_pressure = \"30s\"\n"),
        "3:30: `stall_defer_under_pressure` in service `worker`: defers nothing: the service has no `watchdog`, `heartbeat_file` or `stall_on_silence`"
    );
    assert_eq!(
        error(
            "[service.worker]\ncommand = \"w\"\nwatchdog = \"10s\"\nstall_defer_under_pressure = \"0s\"\n"
        ),
        "4:30: `stall_defer_under_pressure` in service `worker`: expected a duration above zero"
    );
}
