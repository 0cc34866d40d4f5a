"""Sends WATCHDOG=1 at a fixed rate for a while, then exits 0 (for the CPU benchmark).

    heartbeat_rate.py RATE SECONDS
"""

import sys
import time

import sdnotify

rate, seconds = float(sys.argv[1]), float(sys.argv[2])
notifier = sdnotify.SystemdNotifier()
notifier.notify("READY=1")
print("ready", flush=True)
interval = 1.0 / rate
end = time.monotonic() + seconds
next_beat = time.monotonic()
while time.monotonic() < end:
    notifier.notify("WATCHDOG=1")
    next_beat += interval
    time.sleep(max(0.0, next_beat - time.monotonic()))
