"""Writes a status file the way incident 001's worker did: atomically (temp file + rename).

    status_file.py PATH INTERVAL COUNT

Replaces PATH every INTERVAL seconds, COUNT times (then stays alive without writing; a negative
COUNT writes forever). Prints `ready <pid>` after the first write.
"""

import json
import os
import sys
import time

path, interval, count = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
i = 0
while count < 0 or i < count:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"beat": i, "time": time.time()}, f)
    os.replace(tmp, path)
    if i == 0:
        print(f"ready {os.getpid()}", flush=True)
    i += 1
    time.sleep(interval)
while True:
    time.sleep(3600)
