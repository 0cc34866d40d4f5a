//! `examples/kubernetes/`: the manifest and the config must agree (probes on the endpoint's
//! port and open paths, grace above the shutdown bound, volumes where the config looks), and
//! the example config must run: its probes answer without the token, the rest needs it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hangwatch_config::{Config, HttpOpen};
use hangwatch_process::Signal;
use serde_norway::Value;

use crate::harness::{Scratch, Up};
use crate::http::{get, get_with, is};

fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/kubernetes")
        .join(file)
}

fn config() -> Config {
    let path = example("hangwatch.toml");
    let text = std::fs::read_to_string(&path).expect("read the example config");
    Config::parse(&text, &path).unwrap_or_else(|err| panic!("{err}"))
}

/// The one container of the Deployment's pod template.
fn manifest() -> Value {
    let text = std::fs::read_to_string(example("pod.yaml")).expect("read pod.yaml");
    serde_norway::from_str(&text).expect("pod.yaml is YAML")
}

fn at<'v>(value: &'v Value, path: &[&str]) -> &'v Value {
    path.iter()
        .fold(value, |v, key| match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[*key],
        })
}

fn str_at<'v>(value: &'v Value, path: &[&str]) -> &'v str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("{} is not a string", path.join(".")))
}

fn u64_at(value: &Value, path: &[&str]) -> u64 {
    at(value, path)
        .as_u64()
        .unwrap_or_else(|| panic!("{} is not a whole number", path.join(".")))
}

#[test]
fn the_manifest_agrees_with_the_config() {
    let config = config();
    let pod = manifest();
    assert_eq!(str_at(&pod, &["kind"]), "Deployment");
    let spec = at(&pod, &["spec", "template", "spec"]);
    let container = at(spec, &["containers", "0"]);
    let http = config.http.as_ref().expect("the example serves HTTP");
    let port = u64::from(http.listen.port());

    // The kubelet probes from outside the pod and sends no token.
    assert!(
        !http.listen.ip().is_loopback(),
        "the kubelet cannot reach loopback"
    );
    for (probe, path, open) in [
        ("livenessProbe", "/healthz", HttpOpen::Healthz),
        ("readinessProbe", "/readyz", HttpOpen::Readyz),
    ] {
        assert_eq!(str_at(container, &[probe, "httpGet", "path"]), path);
        assert_eq!(
            u64_at(container, &[probe, "httpGet", "port"]),
            port,
            "{probe}"
        );
        assert!(http.open.contains(&open), "{path} needs the token");
    }
    let ports: Vec<u64> = at(container, &["ports"])
        .as_sequence()
        .expect("ports")
        .iter()
        .filter_map(|p| p["containerPort"].as_u64())
        .collect();
    assert!(ports.contains(&port), "{ports:?}");

    // Prometheus's annotations name the endpoint, and /metrics is open to a scraper without
    // the token.
    let annotations = at(&pod, &["spec", "template", "metadata", "annotations"]);
    assert_eq!(str_at(annotations, &["prometheus.io/scrape"]), "true");
    assert_eq!(
        str_at(annotations, &["prometheus.io/port"]),
        port.to_string()
    );
    assert_eq!(str_at(annotations, &["prometheus.io/path"]), "/metrics");
    assert!(http.open.contains(&HttpOpen::Metrics));

    // The kubelet's SIGKILL must come after hangwatch's own bounded shutdown.
    let grace = Duration::from_secs(u64_at(spec, &["terminationGracePeriodSeconds"]));
    assert!(
        grace > config.shutdown_timeout,
        "terminationGracePeriodSeconds {grace:?} is not above shutdown_timeout {:?}",
        config.shutdown_timeout
    );

    // The state directory and the token file are where the volumes are mounted.
    let mounts = at(container, &["volumeMounts"])
        .as_sequence()
        .expect("mounts");
    let mounted = |path: &Path| {
        mounts.iter().find_map(|m| {
            let at = Path::new(m["mountPath"].as_str()?);
            path.starts_with(at)
                .then(|| m["name"].as_str().map(str::to_owned))?
        })
    };
    assert_eq!(mounted(&config.state_dir).as_deref(), Some("state"));
    let token_file = http.token_file.as_deref().expect("a token file");
    assert_eq!(mounted(token_file).as_deref(), Some("http-token"));
    let secret_item = at(spec, &["volumes"])
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["name"].as_str() == Some("http-token"))
        .and_then(|v| v["secret"]["items"][0]["path"].as_str())
        .expect("the token's secret item");
    assert_eq!(
        token_file.file_name().and_then(|n| n.to_str()),
        Some(secret_item)
    );

    // The image runs hangwatch as the entrypoint on this config, with the worker beside it.
    let containerfile =
        std::fs::read_to_string(example("Containerfile")).expect("read the Containerfile");
    assert!(
        containerfile.contains(
            r#"ENTRYPOINT ["hangwatch", "up", "-f", "/app/hangwatch.toml", "--log-format", "json"]"#
        ),
        "{containerfile}"
    );
    for service in &config.services {
        for arg in &service.command.argv {
            if arg.ends_with(".py") {
                assert!(
                    example(arg).is_file(),
                    "{arg} is not in examples/kubernetes"
                );
                assert!(containerfile.contains(arg.as_str()), "{arg} is not copied");
            }
        }
    }
}

/// The example config, run as it is but for what only a pod has: loopback on a free port, the
/// state and the token in a scratch directory.
#[test]
fn the_example_runs_and_its_probes_need_no_token() {
    let dir = Scratch::new("kubernetes");
    std::fs::write(dir.file("token"), "s3cret\n").expect("write the token");
    std::fs::copy(example("worker.py"), dir.file("worker.py")).expect("copy worker.py");
    let text = std::fs::read_to_string(example("hangwatch.toml")).expect("read the config");
    let port = crate::http::free_port();
    let text = text
        .replace("0.0.0.0:9464", "127.0.0.1:0")
        .replace("/var/run/secrets/hangwatch/http-token", "token")
        .replace("state_dir = \"/var/lib/hangwatch\"\n", "")
        .replace("8000", &port.to_string());
    assert!(!text.contains("/var/"), "{text}");
    let mut up = Up::start(&dir, &text);
    up.wait(Duration::from_secs(20), |e| is(e, "worker.2", "started"));
    let addr = crate::http::address(&dir);
    // Ready once `web` answers its HTTP probe.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while get(addr, "/readyz").status != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        let answer = get(addr, path);
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    }
    assert!(get(addr, "/metrics").body.contains("service=\"worker.2\""));
    assert_eq!(get(addr, "/api/status").status, 401);
    assert_eq!(
        get_with(addr, "/api/status", "Authorization: Bearer s3cret\r\n").status,
        200
    );
    let (_, _, guard) = up.stop(Signal::TERMINATE);
    guard.assert_all_gone();
}
