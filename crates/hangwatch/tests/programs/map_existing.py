"""Maps an existing /dev/shm object made by someone else, and holds it.

    map_existing.py PATH SECS

Plain `mmap` on purpose: `SharedMemory(name=...)` would register the object with Python's
resource tracker, which would unlink another program's object at exit (bpo-39959).
Prints `ready <pid>` once mapped, then holds it for SECS.
"""

import mmap
import os
import sys
import time

fd = os.open(sys.argv[1], os.O_RDWR)
mapping = mmap.mmap(fd, 0)
mapping[0] = 1
print("ready", os.getpid(), flush=True)
time.sleep(float(sys.argv[2]))
