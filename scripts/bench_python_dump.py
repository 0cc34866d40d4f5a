#!/usr/bin/env python3
"""Benchmark of reading Python stacks from outside (`hangwatch_diagnose::python::dump`).

    cargo build --release -p hangwatch-diagnose --example python_dump
    python3 scripts/bench_python_dump.py [--threads 50] [--runs 20] [--python python3 ...]
                                         [--py-spy PATH]

For each interpreter, on a program whose THREADS threads (and main thread) wait on an event:

1. The time of one `dump(pid)` inside one process (locating the interpreter included, as every
   call does), median, min and max over RUNS calls.
2. The wall time of a one-shot `python_dump PID` process next to `py-spy dump --nonblocking
   --pid PID` (the `py-spy` on PATH, or --py-spy), alternated in the same loop, median over
   RUNS. Both start a process, locate the interpreter, read and print every stack.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = os.path.join(ROOT, "crates", "hangwatch-diagnose", "tests", "programs", "many_threads.py")
EXAMPLE = os.path.join(ROOT, "target", "release", "examples", "python_dump")


def start(python, threads):
    target = subprocess.Popen(
        [python, PROGRAM, str(threads)], stdout=subprocess.PIPE, text=True
    )
    # many_threads.py prints one line, `ready`, once every thread has started (or dies, and
    # the line is empty).
    line = target.stdout.readline()
    if not line.startswith("ready"):
        target.kill()
        target.wait()
        raise SystemExit(f"{python} {PROGRAM} never became ready")
    return target


def wall_ms(command):
    start_time = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - start_time) * 1000.0


def summary(values):
    return (
        f"median {statistics.median(values):7.2f} ms   "
        f"min {min(values):7.2f}   max {max(values):7.2f}"
    )


def bench(python, threads, runs, py_spy):
    target = start(python, threads)
    try:
        pid = str(target.pid)
        result = subprocess.run(
            [EXAMPLE, pid, str(runs)], capture_output=True, text=True, check=True
        )
        dumped = json.loads(result.stdout)
        timings = json.loads(result.stderr.strip().splitlines()[-1])["dump_ms"]
        with_tid = sum(1 for thread in dumped["threads"] if thread["os_tid"] is not None)
        print(
            f"CPython {dumped['version']} ({python}): {len(dumped['threads'])} threads, "
            f"{with_tid} with a kernel thread ID"
        )
        print(f"  dump() in-process, {runs} calls:          {summary(timings)}")

        ours, theirs = [], []
        for _ in range(runs):
            ours.append(wall_ms([EXAMPLE, pid]))
            if py_spy:
                theirs.append(wall_ms([py_spy, "dump", "--nonblocking", "--pid", pid]))
        print(f"  python_dump PID, one-shot process:        {summary(ours)}")
        if py_spy:
            print(f"  py-spy dump --nonblocking, one-shot:      {summary(theirs)}")
    finally:
        target.kill()
        target.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--python", action="append", help="interpreter(s) to run the target with")
    parser.add_argument("--py-spy", default=shutil.which("py-spy"), help="py-spy to compare with")
    args = parser.parse_args()
    if not os.access(EXAMPLE, os.X_OK):
        raise SystemExit(
            f"{EXAMPLE} is missing: cargo build --release -p hangwatch-diagnose --example python_dump"
        )
    if not args.py_spy:
        print("py-spy not found (pip install py-spy, or --py-spy PATH): no comparison")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    for python in args.python or ["python3"]:
        bench(python, args.threads, args.runs, args.py_spy)


if __name__ == "__main__":
    main()
