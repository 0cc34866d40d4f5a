"""Starts a few threads, prints `ready`, then exits on its own after a moment.

Used to read stacks while the interpreter shuts down and the process disappears.
"""

import sys
import threading
import time

delay = float(sys.argv[1]) if len(sys.argv) > 1 else 0.2
stop = threading.Event()
threads = [threading.Thread(target=stop.wait, name=f"waiter-{i}") for i in range(4)]
for thread in threads:
    thread.start()
print("ready", flush=True)
time.sleep(delay)
stop.set()
for thread in threads:
    thread.join()
