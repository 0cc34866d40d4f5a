#!/usr/bin/env python3
"""Benchmark for diagnosis (issue 4).

    cargo build --release
    python3 -m pip install py-spy   # optional: the peer, measured in the same run when present
    python3 scripts/bench_diagnose.py [--runs 20] [--threads 50]

Starts a CPython process with THREADS threads (half waiting on locks, half asleep, as a hung
service would) and measures, over RUNS runs each:

1. `hangwatch diagnose PID --sample 0ms` with Python stacks and with `--no-python`: the wall
   time of the whole command, and the diagnosis's own `took_ms`. The sampling window is added
   on top of these (200 ms by default); the target is never paused (no ptrace).
2. `py-spy dump --nonblocking --pid PID` on the same process, when py-spy is installed.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TARGET = r"""
import sys, threading, time
n = int(sys.argv[1])
lock = threading.Lock()
lock.acquire()
def waiter():
    with lock:
        pass
def sleeper():
    time.sleep(3600)
for i in range(n - 1):
    threading.Thread(target=waiter if i % 2 else sleeper, name=f"worker-{i}", daemon=True).start()
print("ready", flush=True)
time.sleep(3600)
"""


def timed(command, runs):
    walls, took = [], []
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run(command, capture_output=True, check=True)
        walls.append((time.perf_counter() - start) * 1000)
        if command[1] == "diagnose":
            took.append(json.loads(out.stdout)["took_ms"])
    return walls, took


def show(label, values):
    values = sorted(values)
    print(f"  {label:<44} median {statistics.median(values):7.2f} ms   worst {values[-1]:7.2f} ms")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=50)
    args = parser.parse_args()
    hangwatch = os.path.join(ROOT, "target", "release", "hangwatch")
    if not os.path.exists(hangwatch):
        sys.exit("build first: cargo build --release")
    target = subprocess.Popen(
        [sys.executable, "-c", TARGET, str(args.threads)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert target.stdout.readline().startswith("ready")
        time.sleep(0.3)
        pid = str(target.pid)
        print(f"diagnosis of a CPython {sys.version.split()[0]} process with {args.threads} threads, {args.runs} runs each")
        base = [hangwatch, "diagnose", "--json", "--sample", "0ms"]
        walls, took = timed(base + [pid], args.runs)
        show("hangwatch diagnose (Python stacks), wall", walls)
        show("hangwatch diagnose (Python stacks), took_ms", took)
        walls, took = timed(base + ["--no-python", pid], args.runs)
        show("hangwatch diagnose --no-python, wall", walls)
        show("hangwatch diagnose --no-python, took_ms", took)
        out = subprocess.run(base + [pid], capture_output=True, check=True)
        d = json.loads(out.stdout)
        stacks = sum(1 for p in d["processes"] for t in p["threads"] if t.get("python"))
        print(f"  threads with a Python stack: {stacks} of {sum(len(p['threads']) for p in d['processes'])}; paused: {d['paused_ms']} ms")
        py_spy = shutil.which("py-spy")
        if py_spy:
            walls, _ = timed([py_spy, "dump", "--nonblocking", "--pid", pid], args.runs)
            show("py-spy dump --nonblocking, wall", walls)
        else:
            print("  py-spy: not installed (python3 -m pip install py-spy), not measured")
    finally:
        target.kill()
        target.wait()


if __name__ == "__main__":
    main()
