"""A test suite for the pytest plugin: tests that take a while each, and one that deadlocks.

Run by tests/integration/pytest_plugin.rs (from the source tree) and scripts/check_wheel.py
(through the installed wheel), under `hangwatch run --stall ...`. SLEEP_EACH (seconds) is how
long each healthy test takes.
"""

import os
import threading
import time

SLEEP_EACH = float(os.environ.get("SLEEP_EACH", "0.1"))


def test_first():
    time.sleep(SLEEP_EACH)


def test_second():
    time.sleep(SLEEP_EACH)


def test_third():
    time.sleep(SLEEP_EACH)


def test_deadlocks():
    """Two threads take two locks in opposite orders and wait for each other for ever."""
    first, second = threading.Lock(), threading.Lock()
    both_hold_one = threading.Barrier(2)

    def take(mine, theirs):
        with mine:
            both_hold_one.wait()
            with theirs:
                pass

    threads = [
        threading.Thread(target=take, args=(first, second), name="takes-first", daemon=True),
        threading.Thread(target=take, args=(second, first), name="takes-second", daemon=True),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
