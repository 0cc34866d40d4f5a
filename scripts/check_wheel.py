#!/usr/bin/env python3
"""Builds the wheel as `pip install ./` does, installs it into a fresh virtualenv, and checks the
installed package for real (run by .ci/run):

- `hangwatch` and `python -m hangwatch` run the installed binary;
- `hangwatch run --timeout 2s -- python -c "import time; time.sleep(10)"` exits 124 and its
  incident names the sleeping line (`<string>:1`, blocked in clock_nanosleep);
- pytest loads the plugin by its entry point: under `hangwatch run --stall`, a suite with a
  deadlocking test is stopped (122) and the summary and report name that test; outside hangwatch
  the plugin sends nothing.

Every command runs with a time limit. The last line says how many checks passed and failed.
"""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "target")
WHEELS = os.path.join(TARGET, "wheels")
BUILD_VENV = os.path.join(TARGET, "wheel-build-venv")
CHECK_VENV = os.path.join(TARGET, "wheel-check-venv")
SUITE = os.path.join(ROOT, "crates", "hangwatch", "tests", "programs", "pytest_suite")
REQUIREMENTS = os.path.join(ROOT, "crates", "hangwatch", "tests", "programs", "requirements.txt")

passed = []
failed = []


def sh(argv, timeout, **kwargs):
    """Runs argv to its end (at most `timeout` seconds), echoing it; returns the CompletedProcess."""
    print("+ " + " ".join(argv), flush=True)
    return subprocess.run(argv, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)


def check(name, condition, detail=""):
    if condition:
        passed.append(name)
        print("ok: " + name, flush=True)
    else:
        failed.append(name)
        print("FAILED: {}\n{}".format(name, detail), flush=True)


def cargo_version():
    with open(os.path.join(ROOT, "Cargo.toml")) as cargo_toml:
        for line in cargo_toml:
            if line.startswith("version = "):
                return line.split('"')[1]
    raise SystemExit("no version in Cargo.toml")


def build_wheel():
    """`pip wheel ./`: the PEP 517 build that `pip install ./` runs (maturin, then cargo)."""
    if not os.path.exists(os.path.join(BUILD_VENV, "bin", "python")):
        sh([sys.executable, "-m", "venv", BUILD_VENV], timeout=300, check=True)
    shutil.rmtree(WHEELS, ignore_errors=True)
    sh(
        [os.path.join(BUILD_VENV, "bin", "python"), "-m", "pip", "wheel", "--quiet",
         "--disable-pip-version-check", "--no-deps", "--wheel-dir", WHEELS, ROOT],
        timeout=1800, check=True,
    )
    wheels = glob.glob(os.path.join(WHEELS, "hangwatch-*.whl"))
    if len(wheels) != 1:
        raise SystemExit("expected one wheel in {}, found {}".format(WHEELS, wheels))
    return wheels[0]


def pytest_requirement():
    with open(REQUIREMENTS) as requirements:
        for line in requirements:
            if line.startswith("pytest=="):
                return line.strip()
    raise SystemExit("no pytest pin in " + REQUIREMENTS)


def install(wheel):
    """A fresh virtualenv with the wheel and pytest, nothing else."""
    sh([sys.executable, "-m", "venv", "--clear", CHECK_VENV], timeout=300, check=True)
    python = os.path.join(CHECK_VENV, "bin", "python")
    sh([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel,
        pytest_requirement()], timeout=600, check=True)
    return python


def without_hangwatch_env():
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "HANGWATCH_PID", "HANGWATCH_SERVICE", "VIRTUAL_ENV")}
    # Only the check venv's programs come first; no plugin from elsewhere.
    env["PATH"] = os.path.join(CHECK_VENV, "bin") + os.pathsep + env.get("PATH", "")
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    env.pop("PYTHONPATH", None)
    return env


def check_binary(python, env):
    version = "hangwatch " + cargo_version()
    hangwatch = os.path.join(CHECK_VENV, "bin", "hangwatch")
    out = sh([hangwatch, "--version"], timeout=60, env=env, capture_output=True, text=True)
    check("the installed hangwatch runs", out.returncode == 0 and out.stdout.strip() == version,
          out.stdout + out.stderr)
    out = sh([python, "-m", "hangwatch", "--version"], timeout=60, env=env, capture_output=True,
             text=True)
    check("python -m hangwatch runs it", out.returncode == 0 and out.stdout.strip() == version,
          out.stdout + out.stderr)
    size = os.path.getsize(hangwatch)
    print("installed binary: {:.1f} MB".format(size / 1e6))
    check("the installed binary is the small one (under 20 MB)", size < 20e6, str(size))


def check_timeout(python, env, scratch):
    hangwatch = os.path.join(CHECK_VENV, "bin", "hangwatch")
    report_path = os.path.join(scratch, "timeout.json")
    out = sh([hangwatch, "run", "--timeout", "2s", "--incident-dir", os.path.join(scratch, "inc"),
              "--report", report_path, "--",
              "python", "-c", "import time; time.sleep(10)"],
             timeout=60, env=env, capture_output=True, text=True)
    print(out.stderr, end="")
    check("hangwatch run --timeout 2s exits 124", out.returncode == 124, out.stderr)
    with open(report_path) as f:
        report = json.load(f)
    incident = report.get("incident") or {}
    check("the summary gives the incident's path",
          incident.get("text_path") and incident["text_path"] in out.stderr, out.stderr)
    with open(incident["json_path"]) as f:
        diagnosis = json.load(f)
    sleeping = [
        (thread.get("blocked_in"), frame)
        for process in diagnosis["processes"]
        for thread in process["threads"]
        for frame in ((thread.get("python") or {}).get("frames") or [])
    ]
    check("the incident names the sleeping line (<string>:1, in clock_nanosleep)",
          any(frame["file"] == "<string>" and frame["line"] == 1
              and (blocked or "").startswith("clock_nanosleep") for blocked, frame in sleeping),
          json.dumps(sleeping, indent=1))
    with open(incident["text_path"]) as f:
        text = f.read()
    check("the incident's text shows it too", "<string>:1 in <module>" in text, text)


def check_pytest(python, env, scratch):
    hangwatch = os.path.join(CHECK_VENV, "bin", "hangwatch")
    report_path = os.path.join(scratch, "pytest.json")
    out = sh([hangwatch, "run", "--stall", "5s", "--grace", "1s",
              "--incident-dir", os.path.join(scratch, "pytest-inc"), "--report", report_path,
              "--", python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", SUITE,
              SUITE],
             timeout=120, env=env, capture_output=True, text=True)
    print(out.stdout[-2000:] + out.stderr, end="")
    check("a suite with a deadlocking test is stopped as stalled (122)", out.returncode == 122,
          out.stderr)
    check("the summary names the test that hung",
          "(last STATUS: test_suite.py::test_deadlocks)" in out.stderr, out.stderr)
    with open(report_path) as f:
        report = json.load(f)
    check("the report names it", (report.get("stall") or {}).get("status")
          == "test_suite.py::test_deadlocks", json.dumps(report.get("stall"))[:2000])
    text_path = (report.get("incident") or {}).get("text_path")
    text = open(text_path).read() if text_path else ""
    check("the incident's stacks show it", "in test_deadlocks" in text, text[:4000])

    # Outside hangwatch: a NOTIFY_SOCKET that is not hangwatch's gets nothing.
    path = os.path.join(scratch, "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.setblocking(False)
    outside = dict(env, NOTIFY_SOCKET=path)
    out = sh([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", SUITE,
              "-k", "not deadlocks", SUITE], timeout=120, env=outside, capture_output=True,
             text=True)
    check("outside hangwatch the suite passes", out.returncode == 0, out.stdout + out.stderr)
    try:
        heard = listener.recv(4096)
    except BlockingIOError:
        heard = None
    check("outside hangwatch the plugin sends nothing", heard is None, repr(heard))
    listener.close()


def main():
    wheel = build_wheel()
    print("wheel: {} ({:.1f} MB)".format(os.path.basename(wheel), os.path.getsize(wheel) / 1e6))
    python = install(wheel)
    env = without_hangwatch_env()
    scratch = tempfile.mkdtemp(prefix="hangwatch-wheel-check-")
    try:
        check_binary(python, env)
        check_timeout(python, env, scratch)
        check_pytest(python, env, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("wheel: {} passed, {} failed".format(len(passed), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
