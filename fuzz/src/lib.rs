//! The bodies of the fuzz targets, one function per target, so that the seeds can be replayed
//! by `cargo test` (`tests/seeds.rs`) without libFuzzer: CI runs them, and a target that no
//! longer compiles or a seed that fails is caught there. The targets in `fuzz_targets/` only
//! hand libFuzzer's input to these functions.
//!
//! Each function panics on a finding: a panic of the parser, or a property that does not hold.

use hangwatch_config::duration::parse_duration;
use hangwatch_config::size::parse_size;
use hangwatch_config::{Config, ConfigError};
use hangwatch_diagnose::fds::parsers::{fd_link, fdinfo};
use hangwatch_diagnose::fds::parsers::{net_inet, net_unix};
use hangwatch_diagnose::python::parsers::maps;
use hangwatch_diagnose::python::parsers::status;
use hangwatch_diagnose::python::parsers::syscall_stack_pointer;
use hangwatch_diagnose::sample::parse_switches;
use hangwatch_diagnose::syscall::parse_line;
use hangwatch_leaks::procfs::{Device, parse_maps};
use hangwatch_leaks::procfs::{SysvKind, parse_locks, parse_net_unix, parse_sysvipc};
use hangwatch_process::net_unix::parse_rows;
use hangwatch_process::stat::{format_cmdline, parse_stat};
use hangwatch_protocol::control::{
    FrameError, Hello, MAX_REQUEST, Reply, Request, encode, read_frame,
};
use hangwatch_supervisor::liveness::notify::parse_datagram;
use std::path::Path;

/// The config file: any text is either a config or a list of diagnostics, each at a real
/// position of the text.
pub fn config(data: &[u8]) {
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
                assert!(
                    diagnostic.line >= 1 && diagnostic.column >= 1,
                    "{diagnostic}"
                );
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
}

/// The small languages inside the config: durations, sizes, and env files.
pub fn values(data: &[u8]) {
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
                assert!(
                    column <= width + 1,
                    "{line}:{column} past the line's {width}"
                );
            }
        }
    }
}

/// A notify datagram: every non-empty line is understood or counted as ignored, exactly once.
pub fn notify(data: &[u8]) {
    let (messages, ignored) = parse_datagram(data);
    let body = data.strip_suffix(b"\0").unwrap_or(data);
    let lines = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(messages.len() + ignored, lines);
}

/// The control socket's frames, as the supervisor and the client read them: whatever a peer
/// sends is a message, an error, or the end; nothing allocates past the frame limit.
pub fn control(data: &[u8]) {
    // A stream of frames, read as the supervisor does: a hello, then requests.
    let mut stream = data;
    let mut first = true;
    loop {
        match read_frame(&mut stream, MAX_REQUEST) {
            Ok(payload) => {
                assert!(payload.len() <= MAX_REQUEST);
                if first {
                    let _ = serde_json::from_slice::<Hello>(&payload);
                    first = false;
                } else if let Ok(request) = serde_json::from_slice::<Request>(&payload) {
                    // What decodes, encodes back to the same request.
                    let frame = encode(&request).expect("encode");
                    let again = read_frame(&mut &frame[..], MAX_REQUEST).expect("own frame");
                    let back: Request = serde_json::from_slice(&again).expect("own request");
                    assert_eq!(back, request);
                }
            }
            Err(FrameError::Closed | FrameError::TooLarge { .. } | FrameError::Io(_)) => break,
            Err(err) => panic!("read_frame: {err}"),
        }
    }
    // The whole input as a reply's payload, as the client reads one.
    let _ = serde_json::from_slice::<Reply>(data);
}

/// `/proc/PID/stat`, `cmdline` and `task/TID/syscall`.
pub fn proc_stat(data: &[u8]) {
    if let Some(line) = format_cmdline(data) {
        assert!(!line.is_empty());
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(stat) = parse_stat(text) {
        // The name lies between the first `(` and the last `)`.
        assert!(text.contains(&format!("({})", stat.comm)));
        let _ = stat.is_zombie();
    }
    let _ = parse_line(text);
    let _ = syscall_stack_pointer(text);
}

/// `/proc/PID/status`.
pub fn proc_status(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_switches(text);
    let _ = format!("{:?}", status(text));
}

/// `/proc/PID/maps`, as the leak audit and the Python reader read it.
pub fn proc_maps(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let shm = Device {
        major: 0,
        minor: 0x1b,
    };
    let mapped = parse_maps(text, Some(shm));
    // Each object is kept once.
    let mut inodes = mapped.inodes.clone();
    inodes.sort_unstable();
    inodes.dedup();
    assert_eq!(inodes.len(), mapped.inodes.len());
    assert!(parse_maps(text, None).inodes.is_empty());
    let _ = format!("{:?}", maps(text));
}

/// `/proc/PID/fdinfo/N` and the `/proc/PID/fd/N` link.
pub fn proc_fdinfo(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = format!("{:?}", fdinfo(text));
    let _ = format!("{:?}", fd_link(text));
}

/// The tables of `/proc/net` (`unix`, `tcp`, `tcp6`, `udp`, `udp6`), `/proc/locks` and
/// `/proc/sysvipc/*`: each parser reads the same text, as if it were its own file.
pub fn proc_net(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let rows = parse_rows(text).count();
    assert!(rows < text.lines().count().max(1));
    assert!(parse_net_unix(text).len() <= rows);
    let _ = format!("{:?}", net_unix(text));
    let _ = format!("{:?}", net_inet(text, false));
    let _ = format!("{:?}", net_inet(text, true));
    let _ = parse_locks(text);
    for kind in SysvKind::ALL {
        for object in parse_sysvipc(kind, text) {
            let _ = object.name();
        }
    }
}
