#!/usr/bin/env python3
"""Benchmark for the leak audit (issue 5): its cost on a big tree and a busy /dev/shm.

    cargo build --release && python3 scripts/bench_leaks.py [--runs 20] [--processes 100] [--entries 1000]

Creates ENTRIES pre-existing /dev/shm entries (all removed at the end), then runs, RUNS times
each, `hangwatch run --timeout 2s --leaks clean --report R` on a Python program that forks a
tree of PROCESSES processes and is stopped at the timeout:

1. nothing leaked: the program makes no /dev/shm object;
2. one leak: after forking, the program creates one /dev/shm object and never unlinks it, so
   the audit also searches every process of the machine for other holders, then removes it.

From each report's `leaks` section (hangwatch's own monotonic clock): the before-snapshot, one
look at the live tree (scan_ms / scans: the look before the stop's first signal, and in case 2
the look right after the creation), and the audit after the run. Medians and worst cases.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A tree of N processes (the program and N-1 forked children, all mapping what the program
# mapped), then optionally one /dev/shm object created after the fork and never unlinked.
TREE = r"""
import mmap, os, sys, time
n, leak = int(sys.argv[1]), sys.argv[2]
for _ in range(n - 1):
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
if leak != "-":
    fd = os.open("/dev/shm/" + leak, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.ftruncate(fd, 4096)
    memory = mmap.mmap(fd, 4096)
print("ready", flush=True)
time.sleep(60)
"""


def run(hangwatch, processes, leak, tmp):
    report = os.path.join(tmp, "r.json")
    subprocess.run(
        [
            hangwatch, "run", "--timeout", "2s", "--grace", "2s", "--leaks", "clean",
            "--report", report, "--", "python3", "-c", TREE, str(processes), leak,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    with open(report) as f:
        r = json.load(f)
    stopped = len(r["stopped"])
    if stopped != processes:
        raise SystemExit(f"expected a tree of {processes} processes, the stop saw {stopped}")
    leaks = r["leaks"]
    objects = [o for o in leaks["objects"] if o["attribution"] == "attributable"]
    if leak != "-" and [o["action"] for o in objects] != ["removed"]:
        raise SystemExit(f"the leak was not found and removed: {leaks}")
    if leak == "-" and objects:
        raise SystemExit(f"a leak where there is none: {leaks}")
    return leaks


def row(name, values):
    print(f"  {name:<52} {statistics.median(values):8.3f} {max(values):8.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--processes", type=int, default=100)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument(
        "--hangwatch", default=os.path.join(ROOT, "target", "release", "hangwatch")
    )
    args = parser.parse_args()
    if not os.path.exists(args.hangwatch):
        raise SystemExit(f"{args.hangwatch} not found: run `cargo build --release` first")

    prefix = f"hangwatch-bench-{os.getpid()}"
    made = []
    try:
        for i in range(args.entries):
            path = f"/dev/shm/{prefix}-{i:05}"
            with open(path, "wb") as f:
                f.write(b"\0" * 64)
            made.append(path)
        made.append(f"/dev/shm/{prefix}-leak")  # removed by --leaks clean, or below
        figures = {"baseline": [], "look": [], "audit": [], "audit_leak": [], "look_leak": []}
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.runs):
                clean = run(args.hangwatch, args.processes, "-", tmp)
                figures["baseline"].append(clean["baseline_ms"])
                figures["look"].append(clean["scan_ms"] / max(clean["scans"], 1))
                figures["audit"].append(clean["audit_ms"])
                leaked = run(args.hangwatch, args.processes, f"{prefix}-leak", tmp)
                figures["look_leak"].append(leaked["scan_ms"] / max(leaked["scans"], 1))
                figures["audit_leak"].append(leaked["audit_ms"])
    finally:
        for path in made:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    total = [l + a for l, a in zip(figures["look"], figures["audit"])]
    print(
        f"leak audit: tree of {args.processes} processes, {args.entries} pre-existing /dev/shm "
        f"entries, {args.runs} runs each (ms)"
    )
    print(f"  {'':<52} {'median':>8} {'worst':>8}")
    row("before-snapshot (/dev/shm and SysV IPC)", figures["baseline"])
    row("one look at the live tree (maps, fds)", figures["look"])
    row("audit after the run, nothing leaked", figures["audit"])
    row("look + audit, nothing leaked (goal: under 20 ms)", total)
    row("one look at the live tree, one object held", figures["look_leak"])
    row("audit after the run, one leak (search all + clean)", figures["audit_leak"])


if __name__ == "__main__":
    main()
