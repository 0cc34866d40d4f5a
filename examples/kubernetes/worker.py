"""A queue worker stand-in: sends WATCHDOG=1 after each job, so that a hung job is a stall."""

import os
import signal
import socket
import sys
import time


def notify(message: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
replica = os.environ.get("HANGWATCH_REPLICA", "?")
while True:
    time.sleep(1)  # one job
    print(f"worker {replica}: job done", flush=True)
    notify("WATCHDOG=1")
