#!/usr/bin/env python3
"""What the output tail (the last 50 lines or 16 KiB of each stream, kept for incidents) costs
`hangwatch up` per service.

    cargo build --release
    python3 scripts/bench_tail.py [--services 50] [--lines 400] [--hangwatch target/release/hangwatch]

Runs `hangwatch up` three times on SERVICES services: each service only sleeps; each writes 2
lines of 320 bytes on stdout and on stderr, then sleeps; each writes LINES such lines on each
stream (enough to fill both tails: 2 x 50 lines), then sleeps. Once every service's log holds
its lines, the supervisor's resident memory (VmRSS) and proportional set (Pss of
smaps_rollup) are read. Full minus 2 lines, divided by SERVICES, is what full tails cost per
service (the reading path, its buffers touched by both, cancels out); 2 lines minus silent is
what the output's passage costs besides (read buffers, line splitters, log writers). The bound
computed from the tail's limits is printed beside it.
"""

import argparse
import json
import os
import signal
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = "x" * 320

FLOOD = (
    "i=0; while [ $i -lt {lines} ]; do echo \"$LINE $i\"; echo \"$LINE $i\" >&2; "
    "i=$((i+1)); done; exec sleep 600"
)


def kib(pid, field, path="status"):
    with open(f"/proc/{pid}/{path}") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def measure(hangwatch, services, lines, flood):
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "hangwatch.toml")
        with open(config, "w") as f:
            for n in range(services):
                command = FLOOD.format(lines=lines) if flood else "exec sleep 600"
                f.write(f"[service.s{n}]\ncommand = {json.dumps(command)}\nshell = true\n"
                        f"env = {{ LINE = \"{LINE}\" }}\nrestart = \"never\"\n\n")
        up = subprocess.Popen([hangwatch, "up", "-f", config, "--json"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
        try:
            logs = os.path.join(tmp, ".hangwatch", "logs")
            deadline = time.monotonic() + 60
            want = 2 * lines if flood else 0
            while time.monotonic() < deadline:
                done = 0
                for n in range(services):
                    try:
                        with open(os.path.join(logs, f"s{n}.log"), "rb") as f:
                            if f.read().count(b"\n") >= want:
                                done += 1
                    except OSError:
                        if want == 0:
                            done += 1
                if done == services:
                    break
                time.sleep(0.2)
            time.sleep(1.0)  # settle
            rss = kib(up.pid, "VmRSS")
            pss = kib(up.pid, "Pss", "smaps_rollup")
        finally:
            os.killpg(up.pid, signal.SIGTERM)
            try:
                up.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()
        return rss, pss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--lines", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--hangwatch", default=os.path.join(ROOT, "target", "release", "hangwatch"))
    args = parser.parse_args()
    variants = {"silent": 0, "2 lines x 2 streams": 2, f"{args.lines} lines x 2 streams": args.lines}
    results = {name: [] for name in variants}
    for _ in range(args.repeat):
        for name, lines in variants.items():
            results[name].append(measure(args.hangwatch, args.services, lines, lines > 0))
    print(f"hangwatch up with {args.services} services ({args.repeat} runs each; KiB, median)")
    med = {}
    for name in variants:
        rss = sorted(r[0] for r in results[name])[len(results[name]) // 2]
        pss = sorted(r[1] for r in results[name])[len(results[name]) // 2]
        med[name] = (rss, pss)
        print(f"  {name:<26} VmRSS {rss:>7} KiB   Pss {pss:>7} KiB")
    silent, small, full = (med[name] for name in variants)
    per = [(full[k] - small[k]) * 1024 / args.services for k in (0, 1)]
    path = [(small[k] - silent[k]) * 1024 / args.services for k in (0, 1)]
    print(f"  full tails, per service: {per[0]:,.0f} bytes (VmRSS), {per[1]:,.0f} bytes (Pss)")
    print(f"  the output's passage besides, per service: {path[0]:,.0f} bytes (VmRSS), "
          f"{path[1]:,.0f} bytes (Pss)")
    # Bound: per stream 16 KiB of text or 50 lines, each line a (SystemTime, String) of 40
    # bytes in the ring plus the String's heap block (rounded up by malloc, ~16 bytes).
    line_bytes = min(50 * (len(LINE) + 5), 16 * 1024)
    bound = 2 * (line_bytes + 50 * (40 + 16))
    print(f"  the tail's bound from its limits: {bound:,} bytes per service "
          f"(2 streams x ({line_bytes} bytes of text + 50 x 56 bytes of line headers))")


if __name__ == "__main__":
    main()
