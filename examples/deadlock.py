"""A batch job that hangs the way real ones do, for `hangwatch run` to catch.

- Two worker threads take two locks in opposite order and deadlock: the process stays alive,
  uses no CPU and never finishes (incident 001).
- At start it launches a "cache warmer" that daemonises with setsid and a double fork, the kind
  of helper that outlives its parent and piles up on the machine (incident 000).
- Its SIGTERM handler tries a clean shutdown by joining the workers, which never returns, so
  only SIGKILL ends it (incident 002).

Run it under hangwatch (see the README):

    hangwatch run --timeout 3s --grace 2s -- python3 examples/deadlock.py
"""

import os
import signal
import threading
import time

lock_a = threading.Lock()
lock_b = threading.Lock()


def start_cache_warmer():
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            while True:
                time.sleep(3600)
        os._exit(0)
    os.waitpid(pid, 0)


def worker(first, second, name, delay):
    with first:
        time.sleep(delay)
        print(f"{name}: holding one lock, waiting for the other", flush=True)
        with second:
            print(f"{name}: never printed", flush=True)


def on_term(signum, frame):
    print("deadlock.py: SIGTERM received, joining the workers for a clean exit...", flush=True)
    for t in workers:
        t.join()


start_cache_warmer()
signal.signal(signal.SIGTERM, on_term)
workers = [
    threading.Thread(target=worker, args=(lock_a, lock_b, "worker-1", 0.2)),
    threading.Thread(target=worker, args=(lock_b, lock_a, "worker-2", 0.3)),
]
print(f"deadlock.py: pid {os.getpid()}, starting two workers", flush=True)
for t in workers:
    t.start()
for t in workers:
    t.join()
print("deadlock.py: done (never printed)")
