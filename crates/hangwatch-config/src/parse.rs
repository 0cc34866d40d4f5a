//! TOML text to a validated [`Config`], collecting every problem with its position.
//!
//! The file is parsed into `toml`'s `DeTable`, which keeps the byte span of every key and value,
//! and walked by hand rather than through serde: that way an unknown key, a wrong type and a bad
//! value each get their own message at their own place, and one mistake never hides the next.
//! Problems that need the whole file (unknown dependencies, cycles) are checked after the walk,
//! against the spans kept for each `depends_on` entry.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::duration::parse_duration;
use crate::env_file::parse_env_file;
use crate::error::{ConfigError, Diagnostic, LineIndex};
use crate::model::{
    Alert, AlertOn, Backoff, Check, Command, Config, Http, HttpOpen, Liveness, MaxRestarts,
    OnGiveUp, Probe, Readiness, Replica, RestartPolicy, Service, StallDefer,
};
use crate::size::parse_size;
use crate::suggest::did_you_mean;

type Value<'i> = Spanned<DeValue<'i>>;

const TOP_KEYS: &[&str] = &[
    "state_dir",
    "shutdown_timeout",
    "events_max_size",
    "events_keep",
    "http",
    "http_token_file",
    "http_open",
    "alert",
    "service",
];

const ALERT_KEYS: &[&str] = &[
    "name", "on", "command", "shell", "services", "timeout", "rate", "restarts",
];

const SERVICE_KEYS: &[&str] = &[
    "command",
    "shell",
    "cwd",
    "env",
    "env_file",
    "user",
    "depends_on",
    "restart_with_dependency",
    "critical",
    "replicas",
    "ready",
    "watchdog",
    "heartbeat_file",
    "stall_on_silence",
    "stall_warn",
    "stall_defer_under_pressure",
    "liveness",
    "restart",
    "backoff",
    "max_restarts",
    "on_give_up",
    "stop_signal",
    "stop_grace",
    "memory_limit",
    "log_max_size",
    "log_keep",
    "diagnose",
];

const READY_KEYS: &[&str] = &["tcp", "http", "exec", "every", "timeout", "within"];
const LIVENESS_KEYS: &[&str] = &[
    "tcp", "http", "exec", "every", "timeout", "failures", "within",
];
const CHECK_KEYS: &[&str] = &["tcp", "http", "exec"];
const HEARTBEAT_KEYS: &[&str] = &["path", "stale_after"];
const DEFER_KEYS: &[&str] = &["up_to", "above"];
const DEFER_EXAMPLE: &str = "{ up_to = \"30s\", above = \"25%\" }";
const BACKOFF_KEYS: &[&str] = &["initial", "max", "factor", "jitter", "reset_after"];
const MAX_RESTARTS_KEYS: &[&str] = &["count", "within"];

/// The signal names `stop_signal` accepts (with or without `SIG`, any case).
const SIGNALS: &[&str] = &["TERM", "INT", "HUP", "QUIT", "KILL", "USR1", "USR2"];

/// Unknown `depends_on` names that get a "did you mean" hint; the rest are reported without.
const UNKNOWN_SERVICE_HINTS: usize = 32;

/// Default `shutdown_timeout`.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `events_max_size`: 8 MiB.
const EVENTS_MAX_SIZE: u64 = 8 << 20;
/// Default `events_keep`.
const EVENTS_KEEP: u32 = 3;
/// Default `log_max_size`: 10 MiB.
const LOG_MAX_SIZE: u64 = 10 << 20;

impl Config {
    /// Reads and validates the config file at `path`. Relative paths in it are resolved against
    /// the file's directory; so is `path` itself against the current directory.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Io`] when the file cannot be read; [`ConfigError::Invalid`] with every
    /// problem found otherwise.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Validates `text` as if it were the content of `path`: diagnostics name `path` as given,
    /// and relative paths are resolved against its directory. An `env_file` it names is read.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] with every problem found, in file order.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut checker = Checker {
            file: path.to_owned(),
            text,
            lines: LineIndex::new(text),
            diagnostics: Vec::new(),
        };
        let config = checker.config();
        let mut diagnostics = checker.diagnostics;
        if diagnostics.is_empty()
            && let Some(config) = config
        {
            return Ok(config);
        }
        // Problems in the config first, in file order, then those in env files.
        diagnostics.sort_by(|a, b| {
            (a.file != path, &a.file, a.line, a.column).cmp(&(
                b.file != path,
                &b.file,
                b.line,
                b.column,
            ))
        });
        diagnostics.dedup();
        Err(ConfigError::Invalid(diagnostics))
    }
}

/// Where a value sits, for messages: "`backoff.initial` in service `web`", or "`state_dir`".
#[derive(Clone, Copy)]
struct Place<'a> {
    /// The key path inside the service (or at the top level).
    key: &'a str,
    service: Option<&'a str>,
}

impl std::fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.service {
            Some(service) => write!(f, "`{}` in service `{service}`", self.key),
            None => write!(f, "`{}`", self.key),
        }
    }
}

/// A `depends_on` entry with its span, kept for the checks that need every service.
struct Dependency {
    name: String,
    span: Range<usize>,
}

/// The walk over one file: the text, where to report, and what was found wrong so far.
struct Checker<'t> {
    file: PathBuf,
    text: &'t str,
    lines: LineIndex,
    diagnostics: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let (line, column) = self.lines.position(self.text, span.start);
        self.diagnostics.push(Diagnostic {
            file: self.file.clone(),
            line,
            column,
            message: message.into(),
        });
    }

    /// The whole file. `None` when anything was wrong (the diagnostics say what).
    fn config(&mut self) -> Option<Config> {
        let (root, errors) = DeTable::parse_recoverable(self.text);
        if !errors.is_empty() {
            // Past a syntax error the recovered table is a guess: report only the syntax.
            for error in errors {
                let span = error.span().unwrap_or(0..0);
                let message = error.message().replace('\n', "; ");
                self.error(&span, format!("invalid TOML: {message}"));
            }
            return None;
        }
        let root = root.get_ref();
        self.unknown_keys(root, TOP_KEYS, "at the top level");

        let absolute = std::path::absolute(&self.file).unwrap_or_else(|_| self.file.clone());
        let dir = absolute.parent().map(Path::to_path_buf).unwrap_or_default();

        let state_dir = match get(root, "state_dir") {
            Some(value) => self
                .path(
                    Place {
                        key: "state_dir",
                        service: None,
                    },
                    value,
                )
                .map(|path| dir.join(path)),
            None => Some(dir.join(".hangwatch")),
        };
        let shutdown_timeout = match get(root, "shutdown_timeout") {
            Some(value) => self.positive_duration(
                Place {
                    key: "shutdown_timeout",
                    service: None,
                },
                value,
            ),
            None => Some(SHUTDOWN_TIMEOUT),
        };

        let top = |key| Place { key, service: None };
        let events_max_size = self
            .optional(root, "events_max_size", |c, v| {
                c.positive_size(top("events_max_size"), v)
            })
            .unwrap_or(Some(EVENTS_MAX_SIZE));
        let events_keep = self
            .optional(root, "events_keep", |c, v| {
                c.count(top("events_keep"), v, 0)
            })
            .unwrap_or(Some(EVENTS_KEEP));

        let http = self.http_endpoint(root, &dir);
        let alerts = self.alerts(root, &dir);

        let mut services: Vec<Service> = Vec::new();
        let mut replicated = Vec::new();
        let mut names = Vec::new();
        let mut dependencies = Vec::new();
        let mut complete = true;
        match get(root, "service") {
            None => {}
            Some(value) => match value.get_ref() {
                DeValue::Table(table) => {
                    for (name, value) in table {
                        // A broken service still counts as a name others may depend on, and
                        // its own `depends_on` is still checked.
                        let (service, deps) = self.service(name, value, &dir);
                        match service {
                            Some(copies) => {
                                for copy in &copies {
                                    if copy.replica.is_some() {
                                        replicated.push((copy.name.clone(), name.span()));
                                    }
                                }
                                services.extend(copies);
                            }
                            None => complete = false,
                        }
                        names.push(name.get_ref().as_ref());
                        dependencies.push(deps);
                    }
                }
                other => {
                    complete = false;
                    self.error(
                        &value.span(),
                        format!(
                            "`service`: expected tables like `[service.web]`, found {}",
                            describe(other)
                        ),
                    );
                }
            },
        }
        if names.is_empty() && complete {
            complete = false;
            self.error(
                &(0..0),
                "no services: expected at least one `[service.NAME]` table with a `command`",
            );
        }
        self.dependencies(&names, &dependencies);
        // A copy's name must not be a service's own.
        for (copy, span) in &replicated {
            if names.contains(&copy.as_str()) {
                self.error(
                    span,
                    format!(
                        "service `{copy}` is declared, and is also a copy of a service with \
                         `replicas`: rename one of them"
                    ),
                );
                complete = false;
            }
        }
        expand_replicated_dependencies(&mut services);
        Some(Config {
            path: absolute,
            state_dir: state_dir?,
            shutdown_timeout: shutdown_timeout?,
            events_max_size: events_max_size?,
            events_keep: events_keep?,
            http: http?,
            alerts: alerts?,
            services,
        })
        .filter(|_| complete)
    }

    /// `http` and `http_token_file`: `Some(None)` when HTTP is off. An address that is not
    /// loopback is reachable by others, so it is refused without a token file.
    fn http_endpoint(&mut self, root: &DeTable<'_>, dir: &Path) -> Option<Option<Http>> {
        let top = |key| Place { key, service: None };
        let token_file = match get(root, "http_token_file") {
            Some(value) => self
                .path(top("http_token_file"), value)
                .map(|path| Some(dir.join(path))),
            None => Some(None),
        };
        let open = match get(root, "http_open") {
            Some(value) => self.http_open(value),
            None => Some(Vec::new()),
        };
        let Some(value) = get(root, "http") else {
            for key in ["http_token_file", "http_open"] {
                if let Some(value) = get(root, key) {
                    self.error(
                        &value.span(),
                        format!("`{key}` is set but `http` is not: add `http = \"ADDRESS:PORT\"`"),
                    );
                    return None;
                }
            }
            return Some(None);
        };
        let text = self.string(top("http"), value)?;
        let listen = match text.parse::<std::net::SocketAddr>() {
            Ok(listen) => listen,
            Err(_) => {
                self.error(
                    &value.span(),
                    format!(
                        "`http`: expected an address and port like \"127.0.0.1:9464\" or \"[::1]:9464\", found {text:?}"
                    ),
                );
                return None;
            }
        };
        let token_file = token_file?;
        if !listen.ip().is_loopback() && token_file.is_none() {
            self.error(
                &value.span(),
                format!(
                    "`http`: {listen} is not a loopback address, so `http_token_file` is required (every request must then carry `Authorization: Bearer TOKEN`)"
                ),
            );
            return None;
        }
        let open = open?;
        Some(Some(Http {
            listen,
            token_file,
            open,
        }))
    }

    /// `http_open = ["/healthz", "/readyz"]`.
    fn http_open(&mut self, value: &Value<'_>) -> Option<Vec<HttpOpen>> {
        let paths: Vec<&str> = HttpOpen::ALL.iter().map(|(_, p)| *p).collect();
        let DeValue::Array(items) = value.get_ref() else {
            self.expected(
                Place {
                    key: "http_open",
                    service: None,
                },
                value,
                &format!("an array of paths among {}", paths.join(", ")),
            );
            return None;
        };
        let mut open = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            let found = match item.get_ref() {
                DeValue::String(path) => HttpOpen::ALL
                    .iter()
                    .find(|(_, p)| *p == path.as_ref())
                    .map(|(kind, _)| *kind),
                _ => None,
            };
            match found {
                Some(kind) if !open.contains(&kind) => open.push(kind),
                Some(_) => {}
                None => {
                    ok = false;
                    let hint = match item.get_ref() {
                        DeValue::String(path) => did_you_mean(path, paths.iter().copied()),
                        _ => String::new(),
                    };
                    self.error(
                        &item.span(),
                        format!(
                            "`http_open`: expected one of {} (the JSON API and the page always need the token){hint}",
                            paths.join(", ")
                        ),
                    );
                }
            }
        }
        ok.then_some(open)
    }

    /// Every `[[alert]]`; `None` when one of them is wrong.
    fn alerts(&mut self, root: &DeTable<'_>, dir: &Path) -> Option<Vec<Alert>> {
        let Some(value) = get(root, "alert") else {
            return Some(Vec::new());
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.expected(
                Place {
                    key: "alert",
                    service: None,
                },
                value,
                "`[[alert]]` tables",
            );
            return None;
        };
        let mut alerts = Vec::new();
        let mut complete = true;
        for (n, item) in items.iter().enumerate() {
            match self.alert(n + 1, item, dir) {
                Some(alert) => alerts.push(alert),
                None => complete = false,
            }
        }
        complete.then_some(alerts)
    }

    /// The `n`th `[[alert]]`.
    fn alert(&mut self, n: usize, value: &Value<'_>, dir: &Path) -> Option<Alert> {
        let default_name = format!("alert-{n}");
        let keys: Vec<String> = [
            "name", "on", "command", "shell", "services", "timeout", "rate", "restarts",
        ]
        .iter()
        .map(|key| format!("alert[{n}].{key}"))
        .collect();
        let at = |i: usize| Place {
            key: keys[i].as_str(),
            service: None,
        };
        let whole = format!("alert[{n}]");
        let table = self.table(
            Place {
                key: &whole,
                service: None,
            },
            value,
            "{ on = [\"stalled\"], command = [\"notify-me\"] }",
        )?;
        self.unknown_keys(table, ALERT_KEYS, &format!("in `[[alert]]` number {n}"));
        let before = self.diagnostics.len();
        let name = match get(table, "name") {
            Some(value) => self.string(at(0), value).map(str::to_owned),
            None => Some(default_name),
        };
        let on = match get(table, "on") {
            Some(value) => self.alert_on(at(1), value),
            None => {
                self.error(
                    &value.span(),
                    format!("`[[alert]]` number {n}: no `on`: expected the events that run it, like on = [\"stalled\", \"gave-up\"]"),
                );
                None
            }
        };
        let shell = self
            .optional(table, "shell", |c, v| c.boolean(at(3), v))
            .unwrap_or(Some(false));
        let command = match (get(table, "command"), shell) {
            (Some(value), Some(shell)) => self.command(at(2), value, shell),
            (None, _) => {
                self.error(
                    &value.span(),
                    format!("`[[alert]]` number {n}: no `command`: expected what to run, like command = [\"./notify.sh\"]"),
                );
                None
            }
            (Some(_), None) => None,
        };
        let services = match get(table, "services") {
            Some(value) => Some(
                self.depends_on(at(4), value)
                    .into_iter()
                    .map(|d| d.name)
                    .collect(),
            ),
            None => Some(Vec::new()),
        };
        let timeout = self
            .optional(table, "timeout", |c, v| c.positive_duration(at(5), v))
            .unwrap_or(Some(Duration::from_secs(10)));
        let rate = match get(table, "rate") {
            Some(value) => self.rate(at(6), value, 10, Duration::from_secs(60)),
            None => Some(MaxRestarts {
                count: 10,
                within: Duration::from_secs(60),
            }),
        };
        let restarts = match get(table, "restarts") {
            Some(value) => self.rate(at(7), value, 3, Duration::from_secs(300)),
            None => Some(MaxRestarts {
                count: 3,
                within: Duration::from_secs(300),
            }),
        };
        if self.diagnostics.len() > before {
            return None;
        }
        Some(Alert {
            name: name?,
            on: on?,
            command: command?,
            cwd: dir.to_path_buf(),
            services: services?,
            timeout: timeout?,
            rate: rate?,
            restarts: restarts?,
        })
    }

    /// `on = ["stalled", …]`.
    fn alert_on(&mut self, place: Place<'_>, value: &Value<'_>) -> Option<Vec<AlertOn>> {
        let words: Vec<&str> = AlertOn::ALL.iter().map(|(_, w)| *w).collect();
        let DeValue::Array(items) = value.get_ref() else {
            self.expected(
                place,
                value,
                &format!("an array of events among {}", words.join(", ")),
            );
            return None;
        };
        let mut on = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            let found = match item.get_ref() {
                DeValue::String(word) => AlertOn::ALL
                    .iter()
                    .find(|(_, w)| *w == word.as_ref())
                    .map(|(kind, _)| *kind),
                _ => None,
            };
            match found {
                Some(kind) if !on.contains(&kind) => on.push(kind),
                Some(_) => {}
                None => {
                    ok = false;
                    let hint = match item.get_ref() {
                        DeValue::String(word) => did_you_mean(word, words.iter().copied()),
                        _ => String::new(),
                    };
                    self.error(
                        &item.span(),
                        format!("{place}: expected one of {}{hint}", words.join(", ")),
                    );
                }
            }
        }
        if on.is_empty() && ok {
            self.error(
                &value.span(),
                format!("{place}: expected at least one event"),
            );
            return None;
        }
        ok.then_some(on)
    }

    /// `{ count, within }` with defaults.
    fn rate(
        &mut self,
        place: Place<'_>,
        value: &Value<'_>,
        count: u32,
        within: Duration,
    ) -> Option<MaxRestarts> {
        let table = self.table(place, value, "{ count = 10, within = \"1m\" }")?;
        self.unknown_keys(table, MAX_RESTARTS_KEYS, &format!("in {place}"));
        let count = self
            .optional(table, "count", |c, v| c.count(place, v, 1))
            .unwrap_or(Some(count));
        let within = self
            .optional(table, "within", |c, v| c.positive_duration(place, v))
            .unwrap_or(Some(within));
        Some(MaxRestarts {
            count: count?,
            within: within?,
        })
    }

    /// Reports each key of `table` not in `allowed`, with the nearest allowed one.
    fn unknown_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], place: &str) {
        for key in table.keys() {
            let name = key.get_ref().as_ref();
            if !allowed.contains(&name) {
                let hint = did_you_mean(name, allowed.iter().copied());
                self.error(&key.span(), format!("unknown key `{name}` {place}{hint}"));
            }
        }
    }

    /// One `[service.NAME]` table, and its `depends_on` entries with their spans.
    fn service(
        &mut self,
        name_key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Value<'_>,
        dir: &Path,
    ) -> (Option<Vec<Service>>, Vec<Dependency>) {
        let name = name_key.get_ref().as_ref();
        let before = self.diagnostics.len();
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            self.error(
                &name_key.span(),
                format!(
                    "invalid service name `{name}`: `{bad}` is not allowed (expected letters, digits, `-`, `_` and `.`)"
                ),
            );
        } else if name.is_empty() {
            self.error(
                &name_key.span(),
                "invalid service name ``: expected letters, digits, `-`, `_` and `.`",
            );
        }
        let DeValue::Table(table) = value.get_ref() else {
            self.error(
                &value.span(),
                format!(
                    "service `{name}`: expected a table like `[service.{name}]` with a `command`, found {}",
                    describe(value.get_ref())
                ),
            );
            return (None, Vec::new());
        };
        self.unknown_keys(table, SERVICE_KEYS, &format!("in service `{name}`"));
        let at = |key| Place {
            key,
            service: Some(name),
        };

        let shell = self.optional(table, "shell", |c, v| c.boolean(at("shell"), v));
        let command = match get(table, "command") {
            Some(value) => self.command(
                at("command"),
                value,
                shell.unwrap_or(Some(false)).unwrap_or(false),
            ),
            None => {
                self.error(
                    &name_key.span(),
                    format!(
                        "service `{name}` has no `command`: expected `command = [\"program\", \"arg\"]` or `command = \"program arg\"`"
                    ),
                );
                None
            }
        };
        let cwd = match get(table, "cwd") {
            Some(value) => self.path(at("cwd"), value).map(|path| dir.join(path)),
            None => Some(dir.to_path_buf()),
        };
        let mut env = Vec::new();
        if let Some(value) = get(table, "env_file") {
            env.extend(self.env_file(at("env_file"), value, dir));
        }
        if let Some(value) = get(table, "env") {
            for (key, value) in self.env(at("env"), value) {
                set_var(&mut env, key, value);
            }
        }
        let user = self.optional(table, "user", |c, v| c.user(at("user"), v));
        let depends_on = match get(table, "depends_on") {
            Some(value) => self.depends_on(at("depends_on"), value),
            None => Vec::new(),
        };
        let restart_with_dependency = self
            .optional(table, "restart_with_dependency", |c, v| {
                c.boolean(at("restart_with_dependency"), v)
            })
            .unwrap_or(Some(false));
        let critical = self
            .optional(table, "critical", |c, v| c.boolean(at("critical"), v))
            .unwrap_or(Some(false));
        let ready = match get(table, "ready") {
            Some(value) => self.ready(at("ready"), value),
            None => Some(Readiness::Started),
        };
        let liveness = self.liveness(name, table, cwd.as_deref().unwrap_or(dir));
        let restart = self
            .optional(table, "restart", |c, v| {
                c.keyword(
                    at("restart"),
                    v,
                    &[
                        ("always", RestartPolicy::Always),
                        ("on-failure", RestartPolicy::OnFailure),
                        ("never", RestartPolicy::Never),
                    ],
                )
            })
            .unwrap_or(Some(RestartPolicy::OnFailure));
        let backoff = match get(table, "backoff") {
            Some(value) => self.backoff(name, value),
            None => Some(default_backoff()),
        };
        let max_restarts = match get(table, "max_restarts") {
            Some(value) => self.max_restarts(name, value),
            None => Some(default_max_restarts()),
        };
        let on_give_up = self
            .optional(table, "on_give_up", |c, v| {
                c.keyword(
                    at("on_give_up"),
                    v,
                    &[
                        ("stay-down", OnGiveUp::StayDown),
                        ("shutdown", OnGiveUp::Shutdown),
                    ],
                )
            })
            .unwrap_or(Some(OnGiveUp::StayDown));
        let stop_signal = self
            .optional(table, "stop_signal", |c, v| c.signal(at("stop_signal"), v))
            .unwrap_or_else(|| Some("TERM".to_owned()));
        let stop_grace = self
            .optional(table, "stop_grace", |c, v| c.duration(at("stop_grace"), v))
            .unwrap_or(Some(Duration::from_secs(10)));
        let memory_limit = self.optional(table, "memory_limit", |c, v| {
            c.positive_size(at("memory_limit"), v)
        });
        let log_max_size = self
            .optional(table, "log_max_size", |c, v| {
                c.positive_size(at("log_max_size"), v)
            })
            .unwrap_or(Some(LOG_MAX_SIZE));
        let log_keep = self
            .optional(table, "log_keep", |c, v| c.count(at("log_keep"), v, 0))
            .unwrap_or(Some(5));
        let diagnose = self
            .optional(table, "diagnose", |c, v| c.boolean(at("diagnose"), v))
            .unwrap_or(Some(true));
        let replicas = self
            .optional(table, "replicas", |c, v| {
                let count = c.count(at("replicas"), v, 1)?;
                if count > MAX_REPLICAS {
                    c.error(
                        &v.span(),
                        format!(
                            "{}: expected at most {MAX_REPLICAS} copies, found {count}",
                            at("replicas")
                        ),
                    );
                    return None;
                }
                Some(count)
            })
            .unwrap_or(Some(1));

        if self.diagnostics.len() > before {
            return (None, depends_on);
        }
        let service = (|| {
            Some(Service {
                name: name.to_owned(),
                command: command?,
                cwd: cwd?,
                env,
                user: user.flatten(),
                depends_on: depends_on.iter().map(|d| d.name.clone()).collect(),
                restart_with_dependency: restart_with_dependency?,
                critical: critical?,
                ready: ready?,
                liveness: liveness?,
                restart: restart?,
                backoff: backoff?,
                max_restarts: max_restarts?,
                on_give_up: on_give_up?,
                stop_signal: stop_signal?,
                stop_grace: stop_grace?,
                memory_limit: memory_limit.flatten(),
                log_max_size: log_max_size?,
                log_keep: log_keep?,
                diagnose: diagnose?,
                replica: None,
            })
        })();
        let service = match (service, replicas) {
            (Some(service), Some(count)) if get(table, "replicas").is_some() => {
                Some(replicate(service, count))
            }
            (service, _) => service.map(|s| vec![s]),
        };
        (service, depends_on)
    }

    /// `read(value)` when `key` is present: `None` when absent, `Some(None)` when invalid.
    fn optional<T>(
        &mut self,
        table: &DeTable<'_>,
        key: &str,
        read: impl FnOnce(&mut Self, &Value<'_>) -> Option<T>,
    ) -> Option<Option<T>> {
        get(table, key).map(|value| read(self, value))
    }

    fn expected(&mut self, place: Place<'_>, value: &Value<'_>, what: &str) {
        self.error(
            &value.span(),
            format!(
                "{place}: expected {what}, found {}",
                describe(value.get_ref())
            ),
        );
    }

    fn string<'v>(&mut self, place: Place<'_>, value: &'v Value<'_>) -> Option<&'v str> {
        match value.get_ref() {
            DeValue::String(text) => Some(text.as_ref()),
            _ => {
                self.expected(place, value, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, place: Place<'_>, value: &Value<'_>) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(yes) => Some(*yes),
            _ => {
                self.expected(place, value, "`true` or `false`");
                None
            }
        }
    }

    fn table<'v, 'i>(
        &mut self,
        place: Place<'_>,
        value: &'v Value<'i>,
        example: &str,
    ) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(table) => Some(table),
            _ => {
                self.expected(place, value, &format!("a table like `{example}`"));
                None
            }
        }
    }

    /// A non-empty path (resolved by the caller).
    fn path(&mut self, place: Place<'_>, value: &Value<'_>) -> Option<PathBuf> {
        let text = self.string(place, value)?;
        if text.is_empty() {
            self.error(
                &value.span(),
                format!("{place}: expected a path, found an empty string"),
            );
            return None;
        }
        Some(PathBuf::from(text))
    }

    /// A duration: a string in human units, or a number of seconds.
    fn duration(&mut self, place: Place<'_>, value: &Value<'_>) -> Option<Duration> {
        let result = match value.get_ref() {
            DeValue::String(text) => parse_duration(text).map_err(|err| err.to_string()),
            DeValue::Integer(number) => {
                match i64::from_str_radix(number.as_str(), number.radix()) {
                    Ok(secs) => u64::try_from(secs).map(Duration::from_secs).map_err(|_| {
                        format!("expected a duration, found the negative number {secs}")
                    }),
                    Err(_) => Err("the number is too large".to_owned()),
                }
            }
            DeValue::Float(number) => match number.as_str().parse::<f64>() {
                Ok(secs) => Duration::try_from_secs_f64(secs).map_err(|_| {
                    format!("invalid duration {secs}: expected a non-negative number of seconds")
                }),
                Err(_) => Err("not a number".to_owned()),
            },
            _ => {
                self.expected(
                    place,
                    value,
                    "a duration like \"90s\", \"5m\", \"1h30m\", \"250ms\" or a number of seconds",
                );
                return None;
            }
        };
        match result {
            Ok(duration) => Some(duration),
            Err(message) => {
                self.error(&value.span(), format!("{place}: {message}"));
                None
            }
        }
    }

    /// A duration above zero (an interval or a deadline that zero would make meaningless).
    fn positive_duration(&mut self, place: Place<'_>, value: &Value<'_>) -> Option<Duration> {
        let duration = self.duration(place, value)?;
        if duration.is_zero() {
            self.error(
                &value.span(),
                format!("{place}: expected a duration above zero"),
            );
            return None;
        }
        Some(duration)
    }

    /// A size in bytes above zero: a string with a unit, or a number of bytes.
    fn positive_size(&mut self, place: Place<'_>, value: &Value<'_>) -> Option<u64> {
        let result = match value.get_ref() {
            DeValue::String(text) => parse_size(text).map_err(|err| err.to_string()),
            DeValue::Integer(number) => u64::from_str_radix(number.as_str(), number.radix())
                .map_err(|_| {
                    "expected a size in bytes, found a negative or too large number".to_owned()
                }),
            _ => {
                self.expected(
                    place,
                    value,
                    "a size like \"512MiB\", \"4GiB\" or a number of bytes",
                );
                return None;
            }
        };
        match result {
            Ok(0) => {
                self.error(
                    &value.span(),
                    format!("{place}: expected a size above zero"),
                );
                None
            }
            Ok(bytes) => Some(bytes),
            Err(message) => {
                self.error(&value.span(), format!("{place}: {message}"));
                None
            }
        }
    }

    /// A whole number of at least `min`.
    fn count(&mut self, place: Place<'_>, value: &Value<'_>, min: u32) -> Option<u32> {
        let DeValue::Integer(number) = value.get_ref() else {
            self.expected(place, value, &format!("a whole number of at least {min}"));
            return None;
        };
        match i64::from_str_radix(number.as_str(), number.radix())
            .ok()
            .and_then(|n| u32::try_from(n).ok())
        {
            Some(n) if n >= min => Some(n),
            _ => {
                self.error(
                    &value.span(),
                    format!(
                        "{place}: expected a whole number from {min} to {}, found {number}",
                        u32::MAX
                    ),
                );
                None
            }
        }
    }

    /// A number (integer or float) within `range`.
    fn number(
        &mut self,
        place: Place<'_>,
        value: &Value<'_>,
        range: std::ops::RangeInclusive<f64>,
        what: &str,
    ) -> Option<f64> {
        let parsed = match value.get_ref() {
            DeValue::Integer(number) => i64::from_str_radix(number.as_str(), number.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(number) => number.as_str().parse::<f64>().ok(),
            _ => {
                self.expected(place, value, what);
                return None;
            }
        };
        match parsed {
            Some(n) if n.is_finite() && range.contains(&n) => Some(n),
            _ => {
                self.error(
                    &value.span(),
                    format!(
                        "{place}: expected {what}, found {}",
                        &self.text[value.span()]
                    ),
                );
                None
            }
        }
    }

    /// One of `choices`, by its exact spelling.
    fn keyword<T: Copy>(
        &mut self,
        place: Place<'_>,
        value: &Value<'_>,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        let expected = list_or(&names);
        let text = match value.get_ref() {
            DeValue::String(text) => text.as_ref(),
            _ => {
                self.expected(place, value, &expected);
                return None;
            }
        };
        if let Some((_, choice)) = choices.iter().find(|(name, _)| *name == text) {
            return Some(*choice);
        }
        let hint = did_you_mean(text, names.iter().copied());
        self.error(
            &value.span(),
            format!("{place}: expected {expected}, found `{text}`{hint}"),
        );
        None
    }

    /// A stop signal: a name with or without `SIG` (any case), or a number 1 to 64. Names are
    /// kept upper-case without `SIG`, numbers as their decimal text.
    fn signal(&mut self, place: Place<'_>, value: &Value<'_>) -> Option<String> {
        let expected = "a signal name (TERM, INT, HUP, QUIT, KILL, USR1, USR2, with or without SIG) or a number from 1 to 64";
        let text = match value.get_ref() {
            DeValue::String(text) => text.trim().to_owned(),
            DeValue::Integer(number) => number.to_string(),
            _ => {
                self.expected(place, value, expected);
                return None;
            }
        };
        if let Ok(number) = text.parse::<u32>() {
            if (1..=64).contains(&number) {
                return Some(number.to_string());
            }
        } else {
            let upper = text.to_ascii_uppercase();
            let name = upper.strip_prefix("SIG").unwrap_or(&upper);
            if SIGNALS.contains(&name) {
                return Some(name.to_owned());
            }
            let hint = did_you_mean(name, SIGNALS.iter().copied());
            self.error(
                &value.span(),
                format!("{place}: expected {expected}, found `{text}`{hint}"),
            );
            return None;
        }
        self.error(
            &value.span(),
            format!("{place}: expected {expected}, found `{text}`"),
        );
        None
    }

    /// `command` or a probe's `exec`: an array of strings, or a string split as a POSIX shell
    /// would (or given whole to `/bin/sh -c` when `shell`).
    fn command(&mut self, place: Place<'_>, value: &Value<'_>, shell: bool) -> Option<Command> {
        let argv = match value.get_ref() {
            DeValue::String(text) if shell => {
                if text.trim().is_empty() {
                    None
                } else {
                    Some(vec![
                        "/bin/sh".to_owned(),
                        "-c".to_owned(),
                        text.to_string(),
                    ])
                }
            }
            DeValue::String(text) => match shlex::split(text) {
                Some(words) if words.is_empty() => None,
                Some(words) => Some(words),
                None => {
                    self.error(
                        &value.span(),
                        format!(
                            "{place}: cannot split `{text}` into words: a quote is not closed or a backslash ends it"
                        ),
                    );
                    return None;
                }
            },
            DeValue::Array(_) if shell => {
                self.error(
                    &value.span(),
                    format!(
                        "{place}: `shell = true` runs one string with /bin/sh -c: expected a string, found an array"
                    ),
                );
                return None;
            }
            DeValue::Array(items) => {
                let mut argv = Vec::new();
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(word) => argv.push(word.to_string()),
                        other => {
                            self.error(
                                &item.span(),
                                format!(
                                    "{place}: expected every argument to be a string, found {}",
                                    describe(other)
                                ),
                            );
                            return None;
                        }
                    }
                }
                (!argv.is_empty()).then_some(argv)
            }
            _ => {
                self.expected(
                    place,
                    value,
                    "a command: an array like [\"program\", \"arg\"] or a string like \"program arg\"",
                );
                return None;
            }
        };
        let Some(argv) = argv else {
            self.error(
                &value.span(),
                format!("{place}: empty command: expected a program to run"),
            );
            return None;
        };
        if argv[0].is_empty() {
            self.error(&value.span(), format!("{place}: the program name is empty"));
            return None;
        }
        if argv.iter().any(|word| word.contains('\0')) {
            self.error(
                &value.span(),
                format!("{place}: an argument contains a NUL character"),
            );
            return None;
        }
        Some(Command { argv, shell })
    }

    /// `env = { KEY = "value" }`: strings, or numbers and booleans written as they read.
    fn env(&mut self, place: Place<'_>, value: &Value<'_>) -> Vec<(String, String)> {
        let Some(table) = self.table(place, value, "{ RUST_LOG = \"debug\" }") else {
            return Vec::new();
        };
        let mut vars = Vec::new();
        for (key, value) in table {
            let name = key.get_ref().as_ref();
            if name.is_empty() || name.contains(['=', '\0']) {
                self.error(
                    &key.span(),
                    format!("{place}: invalid variable name `{name}` (it must be non-empty, without `=`)"),
                );
                continue;
            }
            let text = match value.get_ref() {
                DeValue::String(text) => text.to_string(),
                DeValue::Integer(_) | DeValue::Float(_) => self.text[value.span()].to_owned(),
                DeValue::Boolean(yes) => yes.to_string(),
                other => {
                    self.error(
                        &value.span(),
                        format!(
                            "`{}.{name}` in service `{}`: expected a string, found {}",
                            place.key,
                            place.service.unwrap_or_default(),
                            describe(other)
                        ),
                    );
                    continue;
                }
            };
            if text.contains('\0') {
                self.error(
                    &value.span(),
                    format!("{place}: the value of `{name}` contains a NUL character"),
                );
                continue;
            }
            vars.push((name.to_owned(), text));
        }
        vars
    }

    /// `env_file = "path"`: read now, so a bad line is reported with everything else.
    fn env_file(
        &mut self,
        place: Place<'_>,
        value: &Value<'_>,
        dir: &Path,
    ) -> Vec<(String, String)> {
        let Some(path) = self.path(place, value) else {
            return Vec::new();
        };
        let text = match read_env_file(&dir.join(&path)) {
            Ok(text) => text,
            Err(err) => {
                self.error(
                    &value.span(),
                    format!("{place}: cannot read `{}`: {err}", path.display()),
                );
                return Vec::new();
            }
        };
        match parse_env_file(&text) {
            Ok(vars) => vars,
            Err(errors) => {
                // Named as the user would find it: beside the config file as given.
                let shown = match self.file.parent() {
                    Some(parent) => parent.join(&path),
                    None => path,
                };
                for error in errors {
                    self.diagnostics.push(Diagnostic {
                        file: shown.clone(),
                        line: error.line,
                        column: error.column,
                        message: format!(
                            "{} (env_file of service `{}`)",
                            error.message,
                            place.service.unwrap_or_default()
                        ),
                    });
                }
                Vec::new()
            }
        }
    }

    /// `user`: a non-empty name or a uid (resolved when the service starts).
    fn user(&mut self, place: Place<'_>, value: &Value<'_>) -> Option<String> {
        match value.get_ref() {
            DeValue::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
            DeValue::String(_) => {
                self.error(
                    &value.span(),
                    format!("{place}: expected a user name or uid, found an empty string"),
                );
                None
            }
            DeValue::Integer(number) => {
                match u32::from_str_radix(number.as_str(), number.radix()) {
                    Ok(uid) => Some(uid.to_string()),
                    Err(_) => {
                        self.error(
                            &value.span(),
                            format!(
                                "{place}: expected a uid from 0 to {}, found {number}",
                                u32::MAX
                            ),
                        );
                        None
                    }
                }
            }
            _ => {
                self.expected(place, value, "a user name or uid");
                None
            }
        }
    }

    /// `depends_on = ["db", …]`: names only; whether they exist is checked once all are known.
    fn depends_on(&mut self, place: Place<'_>, value: &Value<'_>) -> Vec<Dependency> {
        let DeValue::Array(items) = value.get_ref() else {
            self.expected(place, value, "an array of service names like [\"db\"]");
            return Vec::new();
        };
        let mut names: Vec<Dependency> = Vec::new();
        for item in items.iter() {
            let DeValue::String(name) = item.get_ref() else {
                self.expected(place, item, "a service name (a string)");
                continue;
            };
            if names.iter().any(|d| d.name == name.as_ref()) {
                self.error(&item.span(), format!("{place}: `{name}` is listed twice"));
                continue;
            }
            names.push(Dependency {
                name: name.to_string(),
                span: item.span(),
            });
        }
        names
    }

    /// `ready = "notify"` or `ready = { tcp|http|exec = …, every, timeout, within }`.
    fn ready(&mut self, place: Place<'_>, value: &Value<'_>) -> Option<Readiness> {
        match value.get_ref() {
            DeValue::String(text) => match text.as_ref() {
                "notify" => Some(Readiness::Notify),
                "started" => Some(Readiness::Started),
                other => {
                    let hint = did_you_mean(other, ["notify", "started"]);
                    self.error(
                        &value.span(),
                        format!(
                            "{place}: expected \"notify\", \"started\" or a probe like {{ tcp = \"127.0.0.1:5432\" }}, found `{other}`{hint}"
                        ),
                    );
                    None
                }
            },
            DeValue::Table(table) => {
                let service = place.service.unwrap_or_default();
                self.unknown_keys(
                    table,
                    READY_KEYS,
                    &format!("in `ready` of service `{service}`"),
                );
                let defaults = Probe {
                    check: Check::Tcp(String::new()),
                    every: Duration::from_millis(100),
                    timeout: Duration::from_secs(1),
                    failures: 3,
                    within: Duration::from_secs(60),
                };
                self.probe(place, value.span(), table, defaults)
                    .map(Readiness::Probe)
            }
            _ => {
                self.expected(
                    place,
                    value,
                    "\"notify\" or a probe like { tcp = \"127.0.0.1:5432\" }",
                );
                None
            }
        }
    }

    /// The check and timings of a `ready` or `liveness` probe over `defaults`.
    fn probe(
        &mut self,
        place: Place<'_>,
        span: Range<usize>,
        table: &DeTable<'_>,
        defaults: Probe,
    ) -> Option<Probe> {
        let key = |field: &'static str| -> String { format!("{}.{field}", place.key) };
        let keys = [
            key("tcp"),
            key("http"),
            key("exec"),
            key("every"),
            key("timeout"),
            key("failures"),
            key("within"),
        ];
        let at = |i: usize| Place {
            key: &keys[i],
            service: place.service,
        };
        let present: Vec<_> = CHECK_KEYS
            .iter()
            .filter_map(|k| table.iter().find(|(key, _)| key.get_ref() == k))
            .collect();
        let check = match present.as_slice() {
            [] => {
                self.error(&span, format!("{place}: expected one check: `tcp = \"host:port\"`, `http = \"http://host:port/path\"` or `exec = command`"));
                None
            }
            [(kind, value)] => match kind.get_ref().as_ref() {
                "tcp" => self.tcp(at(0), value).map(Check::Tcp),
                "http" => self.http(at(1), value).map(Check::Http),
                _ => self.command(at(2), value, false).map(Check::Exec),
            },
            [_, (second, _), ..] => {
                self.error(
                    &second.span(),
                    format!(
                        "{place}: expected one check, found both `{}` and `{}`",
                        present[0].0.get_ref(),
                        second.get_ref()
                    ),
                );
                None
            }
        };
        let every = self
            .optional(table, "every", |c, v| c.positive_duration(at(3), v))
            .unwrap_or(Some(defaults.every));
        let timeout = self
            .optional(table, "timeout", |c, v| c.positive_duration(at(4), v))
            .unwrap_or(Some(defaults.timeout));
        let failures = self
            .optional(table, "failures", |c, v| c.count(at(5), v, 1))
            .unwrap_or(Some(defaults.failures));
        let within = self
            .optional(table, "within", |c, v| c.duration(at(6), v))
            .unwrap_or(Some(defaults.within));
        Some(Probe {
            check: check?,
            every: every?,
            timeout: timeout?,
            failures: failures?,
            within: within?,
        })
    }

    /// `host:port` with a port from 1 to 65535 (`[::1]:80` for IPv6).
    fn tcp(&mut self, place: Place<'_>, value: &Value<'_>) -> Option<String> {
        let text = self.string(place, value)?;
        let valid = text.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0)
        });
        if !valid {
            self.error(
                &value.span(),
                format!("{place}: expected `host:port` like \"127.0.0.1:5432\", found `{text}`"),
            );
            return None;
        }
        Some(text.to_owned())
    }

    /// A plain `http://` URL (no TLS: probes talk to local services).
    fn http(&mut self, place: Place<'_>, value: &Value<'_>) -> Option<String> {
        let text = self.string(place, value)?;
        let host = text
            .strip_prefix("http://")
            .map(|rest| rest.split(['/', '?']).next().unwrap_or_default());
        if host.is_none_or(str::is_empty) {
            let why = if text.starts_with("https://") {
                " (https is not supported)"
            } else {
                ""
            };
            self.error(
                &value.span(),
                format!("{place}: expected an URL like \"http://127.0.0.1:8080/healthz\", found `{text}`{why}"),
            );
            return None;
        }
        Some(text.to_owned())
    }

    /// `watchdog`, `heartbeat_file`, `stall_on_silence` and `liveness` of a service.
    fn liveness(&mut self, service: &str, table: &DeTable<'_>, cwd: &Path) -> Option<Liveness> {
        let at = |key| Place {
            key,
            service: Some(service),
        };
        let watchdog = self.optional(table, "watchdog", |c, v| {
            c.positive_duration(at("watchdog"), v)
        });
        let stall_on_silence = self.optional(table, "stall_on_silence", |c, v| {
            c.positive_duration(at("stall_on_silence"), v)
        });
        let stall_warn = self.optional(table, "stall_warn", |c, v| {
            c.positive_duration(at("stall_warn"), v)
        });
        let stall_defer =
            get(table, "stall_defer_under_pressure").map(|value| self.stall_defer(service, value));
        let heartbeat_file = get(table, "heartbeat_file").map(|value| {
            let table = self.table(at("heartbeat_file"), value, "{ path = \"status.json\", stale_after = \"120s\" }")?;
            self.unknown_keys(table, HEARTBEAT_KEYS, &format!("in `heartbeat_file` of service `{service}`"));
            let path = match get(table, "path") {
                Some(v) => self.path(at("heartbeat_file.path"), v).map(|path| cwd.join(path)),
                None => {
                    self.error(&value.span(), format!("{}: no `path`: expected {{ path = \"status.json\", stale_after = \"120s\" }}", at("heartbeat_file")));
                    None
                }
            };
            let stale_after = match get(table, "stale_after") {
                Some(v) => self.positive_duration(at("heartbeat_file.stale_after"), v),
                None => {
                    self.error(&value.span(), format!("{}: no `stale_after`: expected {{ path = \"status.json\", stale_after = \"120s\" }}", at("heartbeat_file")));
                    None
                }
            };
            Some((path?, stale_after?))
        });
        let probe = get(table, "liveness").map(|value| {
            let table = self.table(
                at("liveness"),
                value,
                "{ http = \"http://127.0.0.1:8080/healthz\", every = \"5s\" }",
            )?;
            self.unknown_keys(
                table,
                LIVENESS_KEYS,
                &format!("in `liveness` of service `{service}`"),
            );
            let defaults = Probe {
                check: Check::Tcp(String::new()),
                every: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                failures: 3,
                within: Duration::ZERO,
            };
            self.probe(at("liveness"), value.span(), table, defaults)
        });
        let liveness = Liveness {
            watchdog: watchdog.map_or(Some(None), |v| v.map(Some))?,
            heartbeat_file: heartbeat_file.map_or(Some(None), |v| v.map(Some))?,
            stall_on_silence: stall_on_silence.map_or(Some(None), |v| v.map(Some))?,
            stall_warn: stall_warn.map_or(Some(None), |v| v.map(Some))?,
            stall_defer: stall_defer.map_or(Some(None), |v| v.map(Some))?,
            probe: probe.map_or(Some(None), |v| v.map(Some))?,
        };
        if let (Some(warn), Some(value)) = (liveness.stall_warn, get(table, "stall_warn")) {
            let bounds = [
                ("watchdog", liveness.watchdog),
                (
                    "heartbeat_file.stale_after",
                    liveness.heartbeat_file.as_ref().map(|f| f.1),
                ),
                ("stall_on_silence", liveness.stall_on_silence),
            ];
            let place = at("stall_warn");
            if bounds.iter().all(|(_, bound)| bound.is_none()) {
                self.error(
                    &value.span(),
                    format!("{place}: warns of nothing: the service has no `watchdog`, `heartbeat_file` or `stall_on_silence`"),
                );
                return None;
            }
            if let Some((key, bound)) = bounds
                .iter()
                .find_map(|(key, bound)| bound.filter(|b| *b <= warn).map(|b| (key, b)))
            {
                self.error(
                    &value.span(),
                    format!(
                        "{place}: {} is not below `{key}` ({}): a warning must come before the stall",
                        humantime::format_duration(warn),
                        humantime::format_duration(bound)
                    ),
                );
                return None;
            }
        }
        if let (Some(_), Some(value)) = (
            liveness.stall_defer,
            get(table, "stall_defer_under_pressure"),
        ) && liveness.watchdog.is_none()
            && liveness.heartbeat_file.is_none()
            && liveness.stall_on_silence.is_none()
        {
            self.error(
                &value.span(),
                format!(
                    "{}: defers nothing: the service has no `watchdog`, `heartbeat_file` or `stall_on_silence`",
                    at("stall_defer_under_pressure")
                ),
            );
            return None;
        }
        Some(liveness)
    }

    /// `stall_defer_under_pressure = "30s"` (the bound, at the default threshold) or
    /// `{ up_to = "30s", above = "25%" }`.
    fn stall_defer(&mut self, service: &str, value: &Value<'_>) -> Option<StallDefer> {
        let at = |key| Place {
            key,
            service: Some(service),
        };
        let DeValue::Table(table) = value.get_ref() else {
            return self
                .positive_duration(at("stall_defer_under_pressure"), value)
                .map(|up_to| StallDefer {
                    up_to,
                    above_pct: StallDefer::ABOVE,
                });
        };
        self.unknown_keys(
            table,
            DEFER_KEYS,
            &format!("in `stall_defer_under_pressure` of service `{service}`"),
        );
        let up_to = match get(table, "up_to") {
            Some(v) => self.positive_duration(at("stall_defer_under_pressure.up_to"), v),
            None => {
                self.error(
                    &value.span(),
                    format!(
                        "{}: no `up_to`: expected {DEFER_EXAMPLE}",
                        at("stall_defer_under_pressure")
                    ),
                );
                None
            }
        };
        let above = match get(table, "above") {
            Some(v) => self.percent(at("stall_defer_under_pressure.above"), v),
            None => Some(StallDefer::ABOVE),
        };
        Some(StallDefer {
            up_to: up_to?,
            above_pct: above?,
        })
    }

    /// A percentage from 0 to 100: `"25%"`, or a number.
    fn percent(&mut self, place: Place<'_>, value: &Value<'_>) -> Option<f64> {
        const WHAT: &str = "a percentage from 0 to 100 like \"25%\"";
        let DeValue::String(text) = value.get_ref() else {
            return self.number(place, value, 0.0..=100.0, WHAT);
        };
        match text
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<f64>().ok())
        {
            Some(n) if n.is_finite() && (0.0..=100.0).contains(&n) => Some(n),
            _ => {
                self.error(
                    &value.span(),
                    format!("{place}: expected {WHAT}, found \"{text}\""),
                );
                None
            }
        }
    }

    /// `backoff = { initial, max, factor, jitter, reset_after }` over the defaults.
    fn backoff(&mut self, service: &str, value: &Value<'_>) -> Option<Backoff> {
        let at = |key| Place {
            key,
            service: Some(service),
        };
        let table = self.table(
            at("backoff"),
            value,
            "{ initial = \"100ms\", max = \"30s\" }",
        )?;
        self.unknown_keys(
            table,
            BACKOFF_KEYS,
            &format!("in `backoff` of service `{service}`"),
        );
        let defaults = default_backoff();
        let initial = self
            .optional(table, "initial", |c, v| {
                c.duration(at("backoff.initial"), v)
            })
            .unwrap_or(Some(defaults.initial));
        let max = self
            .optional(table, "max", |c, v| c.duration(at("backoff.max"), v))
            .unwrap_or(Some(defaults.max));
        let factor = self
            .optional(table, "factor", |c, v| {
                c.number(
                    at("backoff.factor"),
                    v,
                    1.0..=1000.0,
                    "a number from 1 to 1000",
                )
            })
            .unwrap_or(Some(defaults.factor));
        let jitter = self
            .optional(table, "jitter", |c, v| {
                c.number(at("backoff.jitter"), v, 0.0..=1.0, "a fraction from 0 to 1")
            })
            .unwrap_or(Some(defaults.jitter));
        let reset_after = self
            .optional(table, "reset_after", |c, v| {
                c.duration(at("backoff.reset_after"), v)
            })
            .unwrap_or(Some(defaults.reset_after));
        let (initial, max) = (initial?, max?);
        if max < initial {
            let span = get(table, "max")
                .or_else(|| get(table, "initial"))
                .map_or_else(|| value.span(), Spanned::span);
            self.error(
                &span,
                format!(
                    "{}: `max` ({}) is below `initial` ({}): expected max >= initial",
                    at("backoff"),
                    humantime::format_duration(max),
                    humantime::format_duration(initial)
                ),
            );
            return None;
        }
        Some(Backoff {
            initial,
            max,
            factor: factor?,
            jitter: jitter?,
            reset_after: reset_after?,
        })
    }

    /// `max_restarts = { count, within }` over the defaults. `count = 0` is allowed: the first
    /// restart the policy asks for already exceeds it, so the service gives up instead.
    fn max_restarts(&mut self, service: &str, value: &Value<'_>) -> Option<MaxRestarts> {
        let at = |key| Place {
            key,
            service: Some(service),
        };
        let table = self.table(at("max_restarts"), value, "{ count = 5, within = \"60s\" }")?;
        self.unknown_keys(
            table,
            MAX_RESTARTS_KEYS,
            &format!("in `max_restarts` of service `{service}`"),
        );
        let defaults = default_max_restarts();
        let count = self
            .optional(table, "count", |c, v| {
                c.count(at("max_restarts.count"), v, 0)
            })
            .unwrap_or(Some(defaults.count));
        let within = self
            .optional(table, "within", |c, v| {
                c.positive_duration(at("max_restarts.within"), v)
            })
            .unwrap_or(Some(defaults.within));
        Some(MaxRestarts {
            count: count?,
            within: within?,
        })
    }

    /// Checks that need every service: unknown names, self-dependencies, cycles.
    fn dependencies(&mut self, names: &[&str], dependencies: &[Vec<Dependency>]) {
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, name)| (*name, i))
            .collect();
        // Edges that can take part in a cycle: to a known service other than itself.
        let mut edges: Vec<Vec<(usize, &Dependency)>> = vec![Vec::new(); names.len()];
        // A hint compares the unknown name with every service: only the first few unknown
        // names get one, so that a file of thousands of them is still checked in milliseconds.
        let mut hints_left = UNKNOWN_SERVICE_HINTS;
        for (i, (name, deps)) in names.iter().zip(dependencies).enumerate() {
            let place = Place {
                key: "depends_on",
                service: Some(name),
            };
            for dep in deps {
                match index.get(dep.name.as_str()) {
                    Some(&j) if j == i => {
                        self.error(
                            &dep.span,
                            format!("{place}: service `{name}` depends on itself"),
                        );
                    }
                    Some(&j) => edges[i].push((j, dep)),
                    None => {
                        let hint = if hints_left > 0 {
                            hints_left -= 1;
                            did_you_mean(&dep.name, names.iter().copied().filter(|n| n != name))
                        } else {
                            String::new()
                        };
                        self.error(
                            &dep.span,
                            format!("{place}: unknown service `{}`{hint}", dep.name),
                        );
                    }
                }
            }
        }
        // Depth-first search in file order; an edge back to a service still on the path closes
        // a cycle, reported once at that `depends_on` entry with the path that leads round.
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut marks = vec![Mark::New; names.len()];
        for root in 0..names.len() {
            if marks[root] != Mark::New {
                continue;
            }
            // The path from `root`, each node with the index of its next edge to follow.
            let mut path = vec![(root, 0_usize)];
            marks[root] = Mark::OnPath;
            while let Some((node, next)) = path.last_mut() {
                let node = *node;
                let edge = edges[node].get(*next);
                *next += 1;
                match edge {
                    Some(&(target, dep)) => match marks[target] {
                        Mark::New => {
                            marks[target] = Mark::OnPath;
                            path.push((target, 0));
                        }
                        Mark::OnPath => {
                            let start = path.iter().position(|&(n, _)| n == target).unwrap_or(0);
                            let cycle: Vec<&str> = path[start..]
                                .iter()
                                .map(|&(n, _)| names[n])
                                .chain([names[target]])
                                .collect();
                            let place = Place {
                                key: "depends_on",
                                service: Some(names[node]),
                            };
                            self.error(
                                &dep.span,
                                format!("{place}: dependency cycle: {}", cycle.join(" -> ")),
                            );
                        }
                        Mark::Done => {}
                    },
                    None => {
                        marks[node] = Mark::Done;
                        path.pop();
                    }
                }
            }
        }
    }
}

/// The value of `key` in `table`.
/// The most copies `replicas` may ask for.
const MAX_REPLICAS: u32 = 1000;

/// `replicas = N`: N copies named `NAME.1` … `NAME.N`, each with `HANGWATCH_REPLICA` set to
/// its number (after `env`, which cannot override it).
fn replicate(service: Service, count: u32) -> Vec<Service> {
    (1..=count)
        .map(|index| {
            let mut copy = service.clone();
            copy.name = format!("{}.{index}", service.name);
            set_var(
                &mut copy.env,
                "HANGWATCH_REPLICA".to_owned(),
                index.to_string(),
            );
            copy.replica = Some(Replica {
                group: service.name.clone(),
                index,
                of: count,
            });
            copy
        })
        .collect()
}

/// A dependency on a service with `replicas` is one on every copy.
fn expand_replicated_dependencies(services: &mut [Service]) {
    let groups: Vec<(String, String)> = services
        .iter()
        .filter_map(|s| {
            s.replica
                .as_ref()
                .map(|r| (r.group.clone(), s.name.clone()))
        })
        .collect();
    if groups.is_empty() {
        return;
    }
    for service in services.iter_mut() {
        let mut expanded = Vec::new();
        for dependency in &service.depends_on {
            let copies: Vec<&String> = groups
                .iter()
                .filter(|(group, _)| group == dependency)
                .map(|(_, name)| name)
                .collect();
            if copies.is_empty() {
                expanded.push(dependency.clone());
            } else {
                expanded.extend(copies.into_iter().cloned());
            }
        }
        service.depends_on = expanded;
    }
}

fn get<'t, 'i>(table: &'t DeTable<'i>, key: &str) -> Option<&'t Value<'i>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v)
}

/// Sets `key` in `vars`, replacing an earlier value in place (so `env` overrides `env_file`).
fn set_var(vars: &mut Vec<(String, String)>, key: String, value: String) {
    match vars.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => vars.push((key, value)),
    }
}

/// "a string", "an array", … for "found …" in messages.
fn describe(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// "`a`, `b` or `c`".
fn list_or(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => format!("`{one}`"),
        [rest @ .., last] => format!(
            "{} or `{last}`",
            rest.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn default_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(30),
        factor: 2.0,
        jitter: 0.1,
        reset_after: Duration::from_secs(10),
    }
}

fn default_max_restarts() -> MaxRestarts {
    MaxRestarts {
        count: 5,
        within: Duration::from_secs(60),
    }
}

/// The largest `env_file` read (1 MiB): an env file is a few lines, and a larger one is a
/// mistake (a log, a data file) that must not be read whole into every check and reload.
const ENV_FILE_MAX: u64 = 1 << 20;

/// Reads an `env_file`, refusing what is not a regular file: a FIFO or `/dev/stdin` would block
/// `check` and `reload` until someone writes to it, and `/dev/zero` would never end.
fn read_env_file(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    if !std::fs::metadata(path)?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(ENV_FILE_MAX + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > ENV_FILE_MAX {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("larger than {ENV_FILE_MAX} bytes"),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests;
