"""A program written for systemd, using the `sdnotify` package, for hangwatch's stall tests.

    notify_client.py heartbeat N INTERVAL   READY=1, N x WATCHDOG=1 every INTERVAL s, then stuck
    notify_client.py trigger                READY=1, then WATCHDOG=trigger, then stuck
    notify_client.py usec USEC              WATCHDOG_USEC=USEC, then stuck (no heartbeat)
    notify_client.py stopping               STOPPING=1, then never exits (incident 002)
    notify_client.py garbage N INTERVAL     garbage datagrams between N heartbeats, then exit 0

Prints `ready <pid> <NOTIFY_SOCKET> <WATCHDOG_USEC or -> <WATCHDOG_PID or ->` once set up, so tests wait on it.
"""

import os
import socket
import sys
import time

import sdnotify

notifier = sdnotify.SystemdNotifier(debug=True)


def ready():
    print(
        f"ready {os.getpid()} {os.environ.get('NOTIFY_SOCKET', '-')} "
        f"{os.environ.get('WATCHDOG_USEC', '-')} {os.environ.get('WATCHDOG_PID', '-')}",
        flush=True,
    )


def stuck(status):
    notifier.notify(f"STATUS={status}")
    while True:
        time.sleep(3600)


def raw(payload):
    addr = os.environ["NOTIFY_SOCKET"]
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(payload, addr)
    s.close()


def main():
    mode = sys.argv[1]
    if mode == "heartbeat":
        n, interval = int(sys.argv[2]), float(sys.argv[3])
        notifier.notify("READY=1")
        ready()
        for i in range(n):
            notifier.notify(f"WATCHDOG=1\nSTATUS=beat {i + 1} of {n}")
            time.sleep(interval)
        stuck("stuck after the last heartbeat")
    elif mode == "trigger":
        notifier.notify("READY=1")
        ready()
        notifier.notify("STATUS=giving up\nWATCHDOG=trigger")
        stuck("triggered")
    elif mode == "usec":
        notifier.notify(f"READY=1\nWATCHDOG_USEC={int(sys.argv[2])}")
        ready()
        stuck("set my own watchdog, then stopped")
    elif mode == "stopping":
        notifier.notify("READY=1")
        ready()
        notifier.notify("STOPPING=1\nSTATUS=finished, shutting down")
        stuck("shutting down forever")
    elif mode == "garbage":
        n, interval = int(sys.argv[2]), float(sys.argv[3])
        notifier.notify("READY=1")
        ready()
        for i in range(n):
            raw(b"\xff\xfe not utf-8 \x00\x01")
            raw(b"NO_EQUALS_SIGN\nWATCHDOG_USEC=abc\nWATCHDOG_USEC=0\nUNKNOWN_KEY=1")
            raw(b"")
            notifier.notify("WATCHDOG=1")
            time.sleep(interval)
        sys.exit(0)
    else:
        sys.exit(f"unknown mode {mode}")


main()
