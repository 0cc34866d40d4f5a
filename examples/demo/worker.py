"""A worker with a heartbeat that deadlocks on its first run (a lock-order inversion)."""

import os
import threading
import time

from notify import notify

FIRST_RUN = os.environ.get("HANGWATCH_RESTARTS", "0") == "0"
orders = threading.Lock()
payments = threading.Lock()


def settle_payments():
    with payments:
        time.sleep(0.2)
        with orders:  # waits for the main thread, which waits for us
            pass


def main():
    print("first run" if FIRST_RUN else "running again after a restart")
    for job in range(1, 13):
        notify("WATCHDOG=1")
        print(f"job {job} done")
        if FIRST_RUN and job == 6:
            threading.Thread(target=settle_payments, name="payments", daemon=True).start()
            with orders:
                time.sleep(0.2)
                with payments:  # deadlock: the heartbeat stops here
                    pass
        time.sleep(0.5)
    print("all jobs done")


main()
