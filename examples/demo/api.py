"""A stand-in for a server: warms up, says READY=1, serves for a while, exits cleanly."""

import signal
import sys
import time

from notify import notify

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

print("warming up")
time.sleep(0.5)
notify("READY=1")
print("ready: serving requests")
for tick in range(1, 15):
    time.sleep(1)
    if tick % 5 == 0:
        print(f"served {tick * 40} requests")
print("done for today")
