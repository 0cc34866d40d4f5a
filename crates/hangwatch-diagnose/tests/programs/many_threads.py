"""N threads (first argument, default 50) block on one event; the main thread waits too.

Prints `ready` once every thread has started, then never exits by itself. Used to measure how
long reading the stacks of a process with many threads takes.
"""

import sys
import threading

count = int(sys.argv[1]) if len(sys.argv) > 1 else 50
release = threading.Event()
started = threading.Barrier(count + 1)


def worker():
    started.wait()
    release.wait()


for index in range(count):
    threading.Thread(target=worker, name=f"worker-{index}", daemon=True).start()
started.wait()
print("ready", flush=True)
release.wait()
