#!/usr/bin/env python3
"""The HTTP endpoint of `hangwatch up`, measured: `/metrics` scrape time and idle CPU.

    cargo build --release
    python3 scripts/bench_http.py [--services 200] [--scrapes 500] [--idle-seconds 30] [--json FILE]

1. **Scrape.** `--services` sleeping services, HTTP on; `--scrapes` GETs of `/metrics` one after
   another on one keep-alive connection (as Prometheus scrapes); the time from sending the
   request to the last byte of the body, median, p90, p99 and max, and the body's size.
2. **Idle CPU.** The same services, twice in the same run: HTTP off, then on (nobody connected);
   after a 3 s settle, hangwatch's CPU time over `--idle-seconds` from
   `/proc/PID/task/*/schedstat` (nanoseconds), as a percentage of one core.

Never in CI: it measures time on a shared machine.
"""

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_ns(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def start(binary, directory, services, http):
    config = ['state_dir = "state"']
    if http:
        config.append('http = "127.0.0.1:0"')
    for i in range(services):
        config.append(f'[service.s{i:03}]\ncommand = ["sleep", "100000"]')
    path = os.path.join(directory, "hangwatch.toml")
    with open(path, "w") as f:
        f.write("\n".join(config) + "\n")
    proc = subprocess.Popen(
        [binary, "up", "--json", "-f", path],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )
    ready = 0
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if '"event":"ready"' in line:
            ready += 1
            if ready == services:
                break
        if time.monotonic() > deadline:
            stop(proc)
            sys.exit("services did not all become ready within 60 s")
    # Keep draining stdout so that hangwatch never blocks on a full pipe.
    import threading
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    address = None
    if http:
        with open(os.path.join(directory, "state", "http.address")) as f:
            address = f.read().strip()
    return proc, address


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def idle(proc, seconds, settle=3):
    # After scrapes, the runtime's blocking threads (used for /proc reads) retire after 10 s
    # idle; a thread that exits takes its schedstat with it, so let them go first.
    time.sleep(settle)
    before, began = cpu_ns(proc.pid), time.monotonic()
    time.sleep(seconds)
    used, wall = cpu_ns(proc.pid) - before, time.monotonic() - began
    return 100.0 * used / (wall * 1e9)


def scrape(address, count, path="/metrics"):
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    times, size = [], 0
    for _ in range(count):
        began = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        times.append(time.perf_counter() - began)
        assert response.status == 200, response.status
        size = len(body)
        series = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))
    conn.close()
    times.sort()
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000
    return {
        "median_ms": statistics.median(times) * 1000,
        "p90_ms": pick(0.90),
        "p99_ms": pick(0.99),
        "max_ms": times[-1] * 1000,
        "bytes": size,
        "series": series,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/hangwatch"))
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--scrapes", type=int, default=500)
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--json")
    args = parser.parse_args()
    result = {"services": args.services}
    with tempfile.TemporaryDirectory(prefix="hangwatch-bench-http-") as directory:
        proc, _ = start(args.binary, directory, args.services, http=False)
        try:
            result["idle_cpu_percent_http_off"] = idle(proc, args.idle_seconds)
        finally:
            stop(proc)
    with tempfile.TemporaryDirectory(prefix="hangwatch-bench-http-") as directory:
        proc, address = start(args.binary, directory, args.services, http=True)
        try:
            result["idle_cpu_percent_http_on"] = idle(proc, args.idle_seconds)
            result["scrape"] = scrape(address, args.scrapes)
            result["status_json"] = scrape(address, args.scrapes, "/api/status")
            result["idle_cpu_percent_after_scrapes"] = idle(proc, args.idle_seconds, settle=12)
        finally:
            stop(proc)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
