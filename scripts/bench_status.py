#!/usr/bin/env python3
"""Status round trip with 200 services: `hangwatch status` against `supervisorctl status` and `pm2 ls`.

Each supervisor runs N sleeping services (the stamp program of bench_up.py); then the status
command a user types is timed, wall clock from exec to exit, REPS times (after one warm-up).
A second column times the daemon's side alone, without the client program's start-up: for
hangwatch one connection, hello and `status` request over its control socket; for supervisord
one `supervisor.getAllProcessInfo` XML-RPC call over its Unix socket. PM2 has no documented
wire protocol, so only its command is timed.

Usage:
    cargo build --release -p hangwatch
    python3 scripts/bench_up.py --install        # peers, once (shared with bench_up.py)
    python3 scripts/bench_status.py [--services 200] [--reps 50]
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import xmlrpc.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_up  # noqa: E402  (the peers' setup and the stamp program live there)


def timed(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    times.sort()
    return {
        "median": statistics.median(times),
        "p90": times[int(len(times) * 0.9) - 1],
        "max": times[-1],
    }


def run_quiet(argv, env=None):
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                          timeout=60)
    if done.returncode != 0:
        raise bench_up.Failed(f"{argv[0]} exited {done.returncode}: {done.stderr[-300:]!r}")
    return done.stdout


def frame(message):
    payload = json.dumps(message).encode()
    return struct.pack(">I", len(payload)) + payload


def read_frame(sock):
    header = sock.recv(4, socket.MSG_WAITALL)
    (length,) = struct.unpack(">I", header)
    data = b""
    while len(data) < length:
        chunk = sock.recv(length - len(data))
        if not chunk:
            raise bench_up.Failed("control socket closed mid-frame")
        data += chunk
    return json.loads(data)


def hangwatch_socket_status(state_dir, expect):
    def call():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(os.path.join(state_dir, "control.sock"))
            s.sendall(frame({"version": 1, "client": "bench"}))
            read_frame(s)
            s.sendall(frame({"request": "status"}))
            reply = read_frame(s)
            if len(reply.get("services", [])) != expect:
                raise bench_up.Failed(f"status listed {len(reply.get('services', []))} services")
    return call


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def make_connection(self, host):
        return UnixHTTPConnection(self.path)


class SupervisordCtl(bench_up.Supervisord):
    """supervisord with the control socket that `supervisorctl` needs."""

    def configure(self, run):
        super().configure(run)
        self.sock = os.path.join(run.tmp, "supervisor.sock")
        with open(self.config, "a") as f:
            f.write(
                "\n[unix_http_server]\n"
                f"file={self.sock}\n"
                "\n[rpcinterface:supervisor]\n"
                "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
                "\n[supervisorctl]\n"
                f"serverurl=unix://{self.sock}\n"
            )


def measure(sup, stamp_bin, n, reps, hangwatch_bin):
    services = [bench_up.Service(f"s{i}", ["sleep"]) for i in range(n)]

    def body(sup, run, stamps):
        stamps.wait("S", n, 60 + n * 0.2, sup.guard)
        time.sleep(2)
        result = {}
        if sup.name == "hangwatch":
            state = os.path.join(run.tmp, "state")
            result["command"] = timed(
                lambda: run_quiet([hangwatch_bin, "status", "-f", sup.config]), reps)
            result["daemon"] = timed(hangwatch_socket_status(state, n), reps * 4)
        elif sup.name == "supervisord":
            ctl = os.path.join(os.path.dirname(sup.binary), "supervisorctl")

            def command():
                # supervisorctl exits 3 when a process is not RUNNING; all are.
                run_quiet([ctl, "-c", sup.config, "status"])
            result["command"] = timed(command, reps)
            proxy = xmlrpc.client.ServerProxy("http://localhost",
                                              transport=UnixTransport(sup.sock))

            def rpc():
                infos = proxy.supervisor.getAllProcessInfo()
                if len(infos) != n:
                    raise bench_up.Failed(f"getAllProcessInfo listed {len(infos)}")
            result["daemon"] = timed(rpc, reps * 4)
        elif sup.name == "pm2":
            result["command"] = timed(lambda: run_quiet([sup.binary, "ls"], env=sup.env), reps)
        return result

    return bench_up.measure(sup, stamp_bin, services, body)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--only", help="comma-separated: hangwatch,supervisord,pm2")
    parser.add_argument("--hangwatch",
                        default=os.path.join(bench_up.ROOT, "target", "release", "hangwatch"))
    args = parser.parse_args()
    bench_up.set_subreaper()
    names = (args.only or "hangwatch,supervisord,pm2").split(",")
    with tempfile.TemporaryDirectory(prefix="bench-status-") as build_dir:
        stamp_bin = bench_up.build_stamp(build_dir)
        rows = {}
        for name in names:
            sup = {
                "hangwatch": lambda: bench_up.Hangwatch(args.hangwatch),
                "supervisord": SupervisordCtl,
                "pm2": bench_up.Pm2,
            }[name]()
            reason = sup.missing()
            if reason:
                rows[name] = f"skipped: {reason}"
                continue
            try:
                rows[name] = measure(sup, stamp_bin, args.services, args.reps, args.hangwatch)
            except bench_up.Failed as err:
                rows[name] = f"failed: {err}"
            finally:
                bench_up.kill_everything_below_us()
    print(f"\nstatus round trip, {args.services} services, ms (median / p90 / max)")
    print(f"{'':12} {'status command':>26} {'daemon round trip':>26}")
    for name, row in rows.items():
        if isinstance(row, str):
            print(f"{name:12} {row}")
            continue

        def cell(key):
            v = row.get(key)
            return f"{v['median']:.2f} / {v['p90']:.2f} / {v['max']:.2f}" if v else "-"
        print(f"{name:12} {cell('command'):>26} {cell('daemon'):>26}")


if __name__ == "__main__":
    main()
