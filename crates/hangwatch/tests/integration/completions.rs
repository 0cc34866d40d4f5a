//! `hangwatch completions` and `hangwatch man`: generated from the command definition, loaded
//! by a real bash and rendered by a real man where the machine has them.

use std::process::{Command, Stdio};

use crate::harness::{Scratch, run};

/// Every visible subcommand of hangwatch, as `--help` lists them.
fn subcommands() -> Vec<String> {
    let help = run(["--help"]);
    assert_eq!(help.code(), 0);
    let commands = help
        .stdout
        .split("Commands:")
        .nth(1)
        .expect("a Commands: section")
        .split("\n\n")
        .next()
        .expect("its lines");
    let names: Vec<String> = commands
        .lines()
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    names
}

#[test]
fn bash_completion_loads_and_completes_subcommands_and_options() {
    let scratch = Scratch::new("completions");
    let done = run(["completions", "bash"]);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let script = scratch.file("hangwatch.bash");
    std::fs::write(&script, &done.stdout).expect("write the script");
    // Source it in a real bash and call its function as bash would at `hangwatch ru<TAB>` and
    // `hangwatch logs --fo<TAB>` (where -f is --follow and the config is --file).
    let probe = format!(
        r#"set -e
source '{}'
complete -p hangwatch
COMP_WORDS=(hangwatch ru); COMP_CWORD=1; COMP_LINE='hangwatch ru'; COMP_POINT=${{#COMP_LINE}}
_hangwatch hangwatch ru hangwatch
echo "run: ${{COMPREPLY[*]}}"
COMP_WORDS=(hangwatch logs --fo); COMP_CWORD=2; COMP_LINE='hangwatch logs --fo'; COMP_POINT=${{#COMP_LINE}}
_hangwatch hangwatch --fo logs
echo "logs: ${{COMPREPLY[*]}}"
"#,
        script.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("-F _hangwatch") && stdout.contains(" hangwatch\n"),
        "{stdout}"
    );
    assert!(stdout.contains("run: run\n"), "{stdout}");
    assert!(stdout.contains("logs: --follow\n"), "{stdout}");
}

#[test]
fn zsh_and_fish_completions_name_every_subcommand() {
    let names = subcommands();
    for shell in ["zsh", "fish"] {
        let done = run(["completions", shell]);
        assert_eq!(done.code(), 0, "{}", done.stderr);
        for name in &names {
            assert!(
                done.stdout.contains(name.as_str()),
                "{shell} completion lacks {name}"
            );
        }
    }
    let unknown = run(["completions", "tcsh"]);
    assert_eq!(unknown.code(), 125);
}

#[test]
fn the_man_page_lists_every_subcommand_and_each_has_its_own() {
    let names = subcommands();
    let page = run(["man"]);
    assert_eq!(page.code(), 0, "{}", page.stderr);
    assert!(page.stdout.contains(".TH hangwatch 1 "), "{}", page.stdout);
    for name in &names {
        assert!(
            page.stdout.contains(&format!("hangwatch\\-{name}(1)")),
            "hangwatch(1) lacks {name}:\n{}",
            page.stdout
        );
        let sub = run(["man", name]);
        assert_eq!(sub.code(), 0, "{name}: {}", sub.stderr);
        assert!(
            sub.stdout.contains(&format!(".TH hangwatch-{name} 1")),
            "{name}:\n{}",
            sub.stdout
        );
    }
    let run_page = run(["man", "run"]);
    assert!(run_page.stdout.contains("\\-\\-timeout"));
    assert_eq!(run(["man", "nope"]).code(), 125);

    // Rendered by man itself where the machine has it (man-db: `man -l FILE`).
    let scratch = Scratch::new("man");
    let file = scratch.file("hangwatch.1");
    std::fs::write(&file, &page.stdout).expect("write the page");
    let rendered = match Command::new("man")
        .arg("-l")
        .arg(&file)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
        Err(err) => panic!("run man: {err}"),
    };
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    assert!(text.contains("SUBCOMMANDS"), "{text}");
    for name in &names {
        assert!(
            text.contains(&format!("hangwatch-{name}(1)")),
            "{name}:\n{text}"
        );
    }
}
