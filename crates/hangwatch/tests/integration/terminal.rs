//! A program run from an interactive terminal: it gets the foreground, so it can read the
//! terminal and Ctrl-C reaches it. `script(1)` provides a real pseudo-terminal whose session
//! hangwatch runs in.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::{fixture, hangwatch};

/// Runs `COMMAND` under `script` in a new pseudo-terminal, feeding it `input` once its output
/// contains `wait_for`; returns the output and script's exit status (the command's).
fn in_terminal(command: &str, wait_for: &str, input: &[u8]) -> (String, i32) {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("script(1) from util-linux is needed for terminal tests");
    let pgid = child.id() as i32;
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            let _ = tx.send(std::mem::take(&mut line));
        }
    });
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut fed = false;
    let kill = || {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    };
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                if !fed && seen.contains(wait_for) {
                    let mut stdin = child.stdin.take().expect("stdin");
                    stdin.write_all(input).expect("write to the terminal");
                    fed = true;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                kill();
                let _ = child.wait();
                panic!("terminal session did not end within 15 s; output:\n{seen}");
            }
        }
    }
    let status = child.wait().expect("wait for script");
    (seen, status.code().unwrap_or(-1))
}

#[test]
fn program_can_read_the_terminal() {
    let command = format!(
        "{} run -- sh -c 'echo ready; read line; echo got $line'",
        hangwatch().display()
    );
    let (output, code) = in_terminal(&command, "ready", b"hello\n");
    assert!(output.contains("got hello"), "{output}");
    assert_eq!(code, 0, "{output}");
}

#[test]
fn ctrl_c_reaches_the_program() {
    let command = format!(
        "{} run -- {} sleep 60",
        hangwatch().display(),
        fixture().display()
    );
    // ETX is what the Ctrl-C key sends; the terminal turns it into SIGINT for its foreground group.
    let (output, code) = in_terminal(&command, "ready", b"\x03");
    assert_eq!(code, 130, "the program died of INT: {output}");
}
