#!/usr/bin/env python3
"""Benchmarks for stall detection (issue 3).

    cargo build --release && python3 -m pip install -r crates/hangwatch/tests/programs/requirements.txt
    python3 scripts/bench_stall.py [--runs 50] [--cpu-seconds 30] [--gigabytes 1]

1. Detection latency: how long after the deadline each source's stall is detected, from the
   `late_ms` of `hangwatch run --report` (hangwatch's monotonic clock at the timer's wake-up
   minus the deadline), over RUNS runs per source: notify (sdnotify client), output silence,
   status file.
2. hangwatch's own CPU time (utime+stime from /proc/PID/stat) while a program sends 100
   WATCHDOG=1 datagrams per second for CPU_SECONDS.
3. Pass-through throughput of a burst of GIGABYTES GB through `hangwatch run
   --stall-on-silence` into /dev/null, against `head` straight into /dev/null, in the same run.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = os.path.join(ROOT, "crates", "hangwatch", "tests", "programs")


def late_ms(hangwatch, options, command, tmp):
    report = os.path.join(tmp, "r.json")
    subprocess.run(
        [hangwatch, "run", "--grace", "1s", "--no-diagnose", "--report", report, *options,
         "--", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    with open(report) as f:
        r = json.load(f)
    if r.get("stall") is None:
        raise SystemExit(f"no stall detected: {r['outcome']}")
    return r["stall"]["late_ms"]


def latency(hangwatch, runs):
    status = None
    cases = {
        "notify (sdnotify, --stall 300ms)": (
            ["--stall", "300ms"],
            ["python3", os.path.join(PROGRAMS, "notify_client.py"), "heartbeat", "2", "0.05"],
        ),
        "output (--stall-on-silence 300ms)": (
            ["--stall-on-silence", "300ms"],
            ["sh", "-c", "echo start; exec sleep 10"],
        ),
        "file (--heartbeat-file, --stall 300ms)": (
            ["--stall", "300ms", "--heartbeat-file", "STATUS"],
            ["python3", os.path.join(PROGRAMS, "status_file.py"), "STATUS", "0.05", "3"],
        ),
    }
    print(f"detection latency after the deadline ({runs} runs per source)")
    print(f"  {'source':<40} {'median':>9} {'worst':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        status = os.path.join(tmp, "status.json")
        for name, (options, command) in cases.items():
            options = [status if o == "STATUS" else o for o in options]
            command = [status if c == "STATUS" else c for c in command]
            values = [late_ms(hangwatch, options, command, tmp) for _ in range(runs)]
            print(f"  {name:<40} {statistics.median(values):7.3f}ms {max(values):7.3f}ms")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def cpu(hangwatch, seconds):
    hz = os.sysconf("SC_CLK_TCK")
    proc = subprocess.Popen(
        [hangwatch, "run", "--stall", "1s", "--",
         "python3", os.path.join(PROGRAMS, "heartbeat_rate.py"), "100", str(seconds + 2)],
        stdout=subprocess.PIPE,
        text=True,
    )
    proc.stdout.readline()  # ready
    time.sleep(1)
    start = cpu_ticks(proc.pid)
    t0 = time.monotonic()
    time.sleep(seconds)
    end = cpu_ticks(proc.pid)
    elapsed = time.monotonic() - t0
    proc.wait()
    used = (end - start) / hz
    print(f"hangwatch CPU with 100 heartbeats/s over {elapsed:.1f} s: "
          f"{used * 1000:.0f} ms ({100 * used / elapsed:.3f} % of a core; "
          f"clock-tick resolution {1000 / hz:.0f} ms)")


def throughput(hangwatch, gigabytes):
    size = int(gigabytes * 1e9)
    head = ["head", "-c", str(size), "/dev/zero"]
    runs = {}
    for name, argv in {
        "head > /dev/null": head,
        "hangwatch run --stall-on-silence 5s -- head > /dev/null": [
            hangwatch, "run", "--stall-on-silence", "5s", "--", *head
        ],
    }.items():
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
        runs[name] = time.perf_counter() - t0
    print(f"pass-through of {gigabytes:g} GB")
    for name, secs in runs.items():
        print(f"  {name:<58} {secs:6.3f} s  {size / secs / 1e9:6.2f} GB/s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--cpu-seconds", type=float, default=30)
    parser.add_argument("--gigabytes", type=float, default=1)
    parser.add_argument(
        "--hangwatch", default=os.path.join(ROOT, "target", "release", "hangwatch")
    )
    args = parser.parse_args()
    if not os.path.exists(args.hangwatch):
        raise SystemExit(f"{args.hangwatch} not found: run `cargo build --release` first")
    latency(args.hangwatch, args.runs)
    cpu(args.hangwatch, args.cpu_seconds)
    throughput(args.hangwatch, args.gigabytes)


if __name__ == "__main__":
    main()
