#!/usr/bin/env python3
"""Memory of `hangwatch up` under process churn (issue 15): its resident set after N short-lived
service processes, next to its resident set after a few.

    cargo build --release -p hangwatch
    python3 scripts/bench_churn.py [--processes 100000] [--early 100] [--hangwatch PATH] [--json out.json]

One service, `/bin/true`, restarted at once after every exit (`restart = "always"`, zero
backoff) and never given up on (`max_restarts` far beyond reach): a crash loop. Every one of its
processes passes through everything `up` keeps per process: the leak evidence's record of the
tree, the reaping, the event log, the service's status. The script reads `up --json`'s events on
its stdout and samples `VmRSS` and `VmHWM` of the supervisor (`/proc/PID/status`) when the
`started` events reach EARLY and then PROCESSES. What a daemon keeps per process it ever saw
shows as a difference that grows with PROCESSES; a flat daemon shows the same figure twice
(give or take allocator noise and the event log's buffers).

The supervisor runs in a temporary directory with its state directory; it is stopped with
SIGTERM (by its PID, which this script started) and waited for, and the directory removed.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """\
events_max_size = "4MiB"
events_keep = 1

[service.churn]
command = ["{true}"]
restart = "always"
backoff = {{ initial = "0s", max = "0s", jitter = 0 }}
max_restarts = {{ count = 4000000000, within = "1s" }}
"""


def memory_kib(pid):
    """VmRSS and VmHWM of PID, in KiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=100_000)
    parser.add_argument("--early", type=int, default=100)
    parser.add_argument(
        "--hangwatch", default=os.path.join(ROOT, "target", "release", "hangwatch")
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds, at most")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    args.hangwatch = os.path.abspath(args.hangwatch)
    if not os.access(args.hangwatch, os.X_OK):
        sys.exit(f"no hangwatch at {args.hangwatch}: cargo build --release -p hangwatch")
    true = shutil.which("true") or "/bin/true"

    work = tempfile.mkdtemp(prefix="hangwatch-churn-")
    config = os.path.join(work, "hangwatch.toml")
    with open(config, "w") as out:
        out.write(CONFIG.format(true=true))
    up = subprocess.Popen(
        [args.hangwatch, "up", "-f", config, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=work,
        text=True,
    )
    samples = {}
    started = 0
    began = time.monotonic()
    deadline = began + args.timeout
    try:
        for line in up.stdout:
            if time.monotonic() > deadline:
                sys.exit(f"timed out after {started} processes")
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") != "started":
                continue
            started += 1
            if started in (args.early, args.processes):
                rss, hwm = memory_kib(up.pid)
                samples[started] = {
                    "rss_kib": rss,
                    "hwm_kib": hwm,
                    "seconds": round(time.monotonic() - began, 1),
                }
                print(
                    f"after {started:>7} processes: RSS {rss / 1024:6.1f} MiB, "
                    f"peak {hwm / 1024:6.1f} MiB ({samples[started]['seconds']} s)",
                    flush=True,
                )
            if started >= args.processes:
                break
        else:
            sys.exit(f"hangwatch up ended after {started} processes (code {up.wait()})")
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=30)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
        shutil.rmtree(work, ignore_errors=True)
    early, late = samples[args.early], samples[args.processes]
    growth = late["rss_kib"] - early["rss_kib"]
    print(
        f"growth: {growth / 1024:+.1f} MiB over {args.processes - args.early} processes "
        f"({growth * 1024 / (args.processes - args.early):+.1f} bytes each)"
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"processes": samples, "growth_kib": growth}, out, indent=2)


if __name__ == "__main__":
    main()
