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
3. The look at a stop's survivors: `hangwatch run --timeout 300ms --grace 500ms
   --report R -- PROGRAM` on programs that outlive TERM (Python that catches it and waits on a
   Condition; a shell that ignores it, with its `sleep` child), SURVIVOR_RUNS times each; from
   each report, `stop.survivors_look_ms` (what the KILL waited for the look: the signal masks,
   then a 20 ms diagnosis with Python stacks, bounded at 150 ms) and `stop.took_ms` (the whole
   stop: grace, look, KILL, reaping). Median and p90.

    python3 scripts/bench_run.py --sections survivors --survivor-runs 30
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


PYTHON_CATCHES_TERM = """
import signal, threading
signal.signal(signal.SIGTERM, lambda *_: print("TERM: draining first", flush=True))
def drain():
    cond = threading.Condition()
    with cond:
        cond.wait()
drain()
"""


def survivors(hangwatch, runs):
    programs = {
        "python (catches TERM, waits)": ["python3", "-c", PYTHON_CATCHES_TERM],
        "sh (ignores TERM) + sleep": ["sh", "-c", "trap '' TERM; sleep 60; :"],
    }
    print(f"grace-expiry stops ({runs} runs each of --timeout 300ms --grace 500ms; the timeout's diagnosis comes before the stop)")
    print(f"  {'program':<30} {'look median':>11} {'look p90':>9} {'stop median':>11} {'stop p90':>9}"
          "  handling")
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "r.json")
        for name, argv in programs.items():
            looks, stops, handlings = [], [], {}
            for _ in range(runs):
                subprocess.run(
                    [hangwatch, "run", "--timeout", "300ms", "--grace", "500ms",
                     "--incident-dir", os.path.join(tmp, "incidents"), "--report", report, "--",
                     *argv],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=False,
                )
                with open(report) as f:
                    r = json.load(f)
                stop = r["stop"]
                if stop.get("survivors_look_ms") is None:
                    continue
                looks.append(stop["survivors_look_ms"])
                stops.append(stop["took_ms"])
                for p in r["stopped"]:
                    h = (p.get("survived") or {}).get("handling", "-")
                    handlings[h] = handlings.get(h, 0) + 1
            if not looks:
                print(f"  {name:<30} no look (nothing outlived the grace)")
                continue
            said = ", ".join(f"{k} {v}" for k, v in sorted(handlings.items()))
            print(f"  {name:<30} {statistics.median(looks):>8.1f} ms {pct(looks, 0.9):>6.1f} ms"
                  f" {statistics.median(stops):>8.1f} ms {pct(stops, 0.9):>6.1f} ms  {said}")
    print("  (stop = grace 500 ms + look + KILL + reaping; look bound 150 ms)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--precision-runs", type=int, default=50)
    parser.add_argument("--survivor-runs", type=int, default=30)
    parser.add_argument(
        "--sections", default="overhead,precision,survivors",
        help="which measurements (comma-separated: overhead, precision, survivors)",
    )
    parser.add_argument(
        "--hangwatch", default=os.path.join(ROOT, "target", "release", "hangwatch")
    )
    args = parser.parse_args()
    if not os.path.exists(args.hangwatch):
        raise SystemExit(f"{args.hangwatch} not found: run `cargo build --release` first")
    if shutil.which("timeout") is None:
        raise SystemExit("GNU timeout not found")
    sections = args.sections.split(",")
    if "overhead" in sections:
        overhead(args.hangwatch, args.runs)
    if "precision" in sections and args.precision_runs > 0:
        precision(args.hangwatch, args.precision_runs)
    if "survivors" in sections:
        survivors(args.hangwatch, args.survivor_runs)


if __name__ == "__main__":
    main()
