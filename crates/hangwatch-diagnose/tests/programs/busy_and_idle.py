"""One thread spins in pure Python, one sleeps in `time.sleep`; the main thread waits.

Prints `ready` once both threads have started, then never exits by itself.
"""

import threading
import time

started = threading.Barrier(3)


def spin():
    started.wait()
    count = 0
    while True:
        count += 1  # spins: spin


def sleep():
    started.wait()
    time.sleep(3600)  # sleeps: sleep


threading.Thread(target=spin, name="spinner", daemon=True).start()
threading.Thread(target=sleep, name="sleeper", daemon=True).start()
started.wait()
print("ready", flush=True)
threading.Event().wait()
