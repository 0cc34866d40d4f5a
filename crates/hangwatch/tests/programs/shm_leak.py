"""Creates POSIX shared memory with `multiprocessing.shared_memory` and never unlinks it.

    shm_leak.py SECS

Python's resource tracker would unlink it when the program ends (with a warning); the program
unregisters it, as code that shares memory with later programs does (Python 3.13 names this
`track=False`), so it stays. Prints `ready <pid> <name>`, holds the mapping for SECS, exits 0.
"""

import os
import sys
import time
from multiprocessing import resource_tracker, shared_memory

memory = shared_memory.SharedMemory(create=True, size=1 << 16)
resource_tracker.unregister(memory._name, "shared_memory")
memory.buf[0] = 1
print("ready", os.getpid(), memory.name, flush=True)
time.sleep(float(sys.argv[1]))
