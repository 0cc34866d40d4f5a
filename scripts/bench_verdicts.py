#!/usr/bin/env python3
"""The verdict hangwatch gives on each of its test programs: a table, program -> verdict.

    cargo build --release
    python3 scripts/bench_verdicts.py [--hangwatch target/release/hangwatch] [--json out.json]

Each program of crates/hangwatch/tests/programs/ and crates/hangwatch-diagnose/tests/programs/
(every mode of python_locks.py) runs under `hangwatch run --timeout T --grace 1s
--incident-dir D --report R` (those that hang through a heartbeat under `--stall 1s` or
`--heartbeat-file`), so that the diagnosis is the one a stop takes; the report's
`incident.verdict` is printed. Programs that end by themselves, or that exist for the leak
audit rather than for a diagnosis, run too: their line says what they are. The Python of the
tests' virtualenv (target/test-venv, made by scripts/test) is used when present, for the
packages some programs import (sdnotify, watchdog).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UP = os.path.join(ROOT, "crates", "hangwatch", "tests", "programs")
DIAG = os.path.join(ROOT, "crates", "hangwatch-diagnose", "tests", "programs")


def cases(tmp):
    """(label, hangwatch options, program argv relative to python)."""
    t = ["--timeout", "2s"]
    status = os.path.join(tmp, "status.json")
    yield "busy_loop.py", t, [f"{UP}/busy_loop.py"]
    yield "cleanup_helper.py 30 DONE", t, [f"{UP}/cleanup_helper.py", "30", f"{tmp}/done"]
    yield "heartbeat_rate.py 10 1", t, [f"{UP}/heartbeat_rate.py", "10", "1"]
    yield "idle_asyncio.py", t, [f"{UP}/idle_asyncio.py"]
    yield "lock_deadlock.py", t, [f"{UP}/lock_deadlock.py"]
    yield "long_sleep_thread.py", t, [f"{UP}/long_sleep_thread.py"]
    yield "notify_client.py heartbeat 3 0.2 (--stall 1s)", ["--stall", "1s"], [
        f"{UP}/notify_client.py", "heartbeat", "3", "0.2"]
    yield "notify_client.py trigger (--stall 10s)", ["--stall", "10s"], [
        f"{UP}/notify_client.py", "trigger"]
    yield "observer_loop_deadlock.py DIR", ["--timeout", "3s"], [
        f"{UP}/observer_loop_deadlock.py", f"{tmp}/observed"]
    yield "pipe_wait.py", t, [f"{UP}/pipe_wait.py"]
    yield "pool_job.py hang", ["--timeout", "4s"], [f"{UP}/pool_job.py", "hang"]
    yield "shm_leak.py 30", t, [f"{UP}/shm_leak.py", "30"]
    yield "socket_and_lock.py DIR", t, [f"{UP}/socket_and_lock.py", f"{tmp}/sock"]
    yield "status_file.py (--heartbeat-file, --stall 1s)", [
        "--heartbeat-file", status, "--stall", "1s"], [f"{UP}/status_file.py", status, "0.2", "2"]
    yield "diagnose: busy_and_idle.py", t, [f"{DIAG}/busy_and_idle.py"]
    yield "diagnose: deadlock.py", t, [f"{DIAG}/deadlock.py"]
    yield "diagnose: exits_soon.py", t, [f"{DIAG}/exits_soon.py"]
    yield "diagnose: fd_holder.py tcp-server", t, [f"{DIAG}/fd_holder.py", "tcp-server"]
    yield "diagnose: many_threads.py 50", t, [f"{DIAG}/many_threads.py", "50"]
    for mode in ["lock-order", "rlock-call", "condition", "bare-acquire", "holder-sleeps", "ring"]:
        yield f"diagnose: python_locks.py {mode}", t, [f"{DIAG}/python_locks.py", mode]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hangwatch", default=os.path.join(ROOT, "target", "release", "hangwatch"))
    parser.add_argument("--json", help="also write the table as JSON")
    args = parser.parse_args()
    venv_python = os.path.join(ROOT, "target", "test-venv", "bin", "python3")
    python = venv_python if os.path.exists(venv_python) else sys.executable
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "observed"), exist_ok=True)
        os.makedirs(os.path.join(tmp, "sock"), exist_ok=True)
        for label, options, program in cases(tmp):
            report = os.path.join(tmp, "report.json")
            if os.path.exists(report):
                os.unlink(report)
            done = subprocess.run(
                [args.hangwatch, "run", *options, "--grace", "1s", "--leaks", "clean",
                 "--incident-dir", os.path.join(tmp, "incidents"), "--report", report, "--",
                 python, *program],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True, timeout=60, check=False,
            )
            try:
                with open(report) as f:
                    r = json.load(f)
            except (OSError, ValueError):
                rows.append((label, done.returncode, "(no report)", done.stderr.strip()[-200:]))
                continue
            incident = r.get("incident") or {}
            verdict = incident.get("verdict") or []
            outcome = r.get("outcome", {})
            reason = outcome.get("reason") if isinstance(outcome, dict) else outcome
            if not incident:
                text = f"(no diagnosis: the program ended by itself, {reason})"
            elif not verdict:
                text = "(no verdict)"
            else:
                text = " | ".join(verdict)
            rows.append((label, done.returncode, text, ""))
    width = max(len(r[0]) for r in rows)
    for label, code, text, err in rows:
        print(f"{label:<{width}}  {code:>3}  {text}")
        if err:
            print(f"{'':<{width}}       {err}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"program": r[0], "exit": r[1], "verdict": r[2]} for r in rows], f, indent=1)


if __name__ == "__main__":
    main()
