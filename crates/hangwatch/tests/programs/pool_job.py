"""A ProcessPoolExecutor job as in incident 004: named POSIX semaphores (the spawn context, as
on macOS and as Python 3.14's default forkserver on Linux), a resource tracker, busy workers.

    pool_job.py MODE

MODE is `finish` (run a few tasks and exit 0, leaving to the resource tracker, as Python allows,
shared memory to unlink, so that the tracker outlives the program by a few milliseconds), `hang` (keep both workers busy and wait; the
default TERM ends every process) or `ignore-term` (the same, with TERM ignored everywhere, so
only KILL ends it). Prints `ready <pid> <inodes>` once the pool works, where <inodes> are the
comma-separated inodes of the /dev/shm files this process maps (its semaphores), so that a test
can check that none is left behind.
"""

import concurrent.futures
import multiprocessing
import os
import signal
import sys
import time
from multiprocessing import shared_memory


def shm_inodes():
    dev = os.stat("/dev/shm").st_dev
    device = f"{os.major(dev):02x}:{os.minor(dev):02x}"
    inodes = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[3] == device and fields[4] != "0":
                inodes.add(fields[4])
    return sorted(inodes)


def ignore_term():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def work(seconds):
    time.sleep(seconds)
    return seconds


def main():
    mode = sys.argv[1]
    initializer = ignore_term if mode == "ignore-term" else None
    if initializer:
        initializer()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        2, mp_context=context, initializer=initializer
    ) as pool:
        if mode == "finish":
            assert list(pool.map(work, [0] * 8)) == [0] * 8
            # Never unlinked by the program: the tracker does it (with a warning) at the end.
            global left_to_the_tracker
            left_to_the_tracker = shared_memory.SharedMemory(create=True, size=4096)
            print("ready", os.getpid(), ",".join(shm_inodes()), flush=True)
            return
        busy = [pool.submit(work, 60) for _ in range(2)]
        print("ready", os.getpid(), ",".join(shm_inodes()), flush=True)
        time.sleep(60)
        del busy


if __name__ == "__main__":
    main()
