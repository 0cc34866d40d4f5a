#!/usr/bin/env python3
"""Benchmarks for `hangwatch run` (issue 2): overhead and timeout precision.

    cargo build --release && python3 scripts/bench_run.py [--runs 300] [--precision-runs 50]

1. Overhead: wall time of `true`, `timeout 10 true` (GNU coreutils) and
   `hangwatch run -- true`, interleaved in one loop so all three see the same machine state;
   medians and 90th percentiles are printed; also `hangwatch run -- true` with
   HANGWATCH_GUARDIAN=0, to show what the guardian (issue 15) costs a normal run.
2. Timeout precision: `hangwatch run --timeout 200ms --report R -- sleep 5`, 50 times; from each
   report, how long after the deadline the stop signal was sent (the timer's lateness plus the
   tree scan before the signal). Median and worst.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spawn_and_wait(argv, env=None):
    """Wall time of one run, with as little Python in the way as possible."""
    start = time.perf_counter_ns()
    pid = os.posix_spawnp(argv[0], argv, env if env is not None else os.environ)
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter_ns() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed: {status}")
    return elapsed / 1e6


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def overhead(hangwatch, runs):
    cases = {
        "true": ["true"],
        "timeout 10 true": ["timeout", "10", "true"],
        "hangwatch run -- true": [hangwatch, "run", "--", "true"],
        "  without its guardian": [hangwatch, "run", "--", "true"],
    }
    # The guardian (issue 15) turned off, to show what it costs a normal run.
    envs = {"  without its guardian": {**os.environ, "HANGWATCH_GUARDIAN": "0"}}
    times = {name: [] for name in cases}
    for name, argv in cases.items():  # warm the page cache
        spawn_and_wait(argv, envs.get(name))
    for _ in range(runs):
        for name, argv in cases.items():
            times[name].append(spawn_and_wait(argv, envs.get(name)))
    print(f"overhead ({runs} runs each, interleaved; wall ms)")
    print(f"  {'command':<24} {'median':>8} {'p90':>8}")
    for name, values in times.items():
        print(f"  {name:<24} {statistics.median(values):8.3f} {pct(values, 0.9):8.3f}")
    diff = statistics.median(times["hangwatch run -- true"]) - statistics.median(
        times["timeout 10 true"]
    )
    print(f"  hangwatch minus GNU timeout (medians): {diff:+.3f} ms (goal: within 1 ms)")
    guardian = statistics.median(times["hangwatch run -- true"]) - statistics.median(
        times["  without its guardian"]
    )
    print(f"  the guardian's cost (medians): {guardian:+.3f} ms")


def precision(hangwatch, runs):
    late = []
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "r.json")
        for _ in range(runs):
            subprocess.run(
                # --no-diagnose: this measures the stop path; a diagnosis (default) delays the
                # stop by its sampling window on purpose (see scripts/bench_diagnose.py).
                [hangwatch, "run", "--timeout", "200ms", "--no-diagnose", "--report", report,
                 "--", "sleep", "5"],
                stderr=subprocess.DEVNULL,
                check=False,
            )
            with open(report) as f:
                r = json.load(f)
            first_signal = min(s["after_ms"] for p in r["stopped"] for s in p["signals"])
            late.append(r["stop"]["late_ms"] + first_signal)
    print(f"timeout precision ({runs} runs of --timeout 200ms; stop signal sent after the deadline)")
    print(f"  median {statistics.median(late):.3f} ms, worst {max(late):.3f} ms (goal: under 5 ms)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--precision-runs", type=int, default=50)
    parser.add_argument(
        "--hangwatch", default=os.path.join(ROOT, "target", "release", "hangwatch")
    )
    args = parser.parse_args()
    if not os.path.exists(args.hangwatch):
        raise SystemExit(f"{args.hangwatch} not found: run `cargo build --release` first")
    if shutil.which("timeout") is None:
        raise SystemExit("GNU timeout not found")
    overhead(args.hangwatch, args.runs)
    if args.precision_runs > 0:
        precision(args.hangwatch, args.precision_runs)


if __name__ == "__main__":
    main()
