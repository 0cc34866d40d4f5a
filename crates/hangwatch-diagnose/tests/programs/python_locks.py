"""Threads that wait for a threading lock another thread holds, one situation per mode.

    python_locks.py lock-order     MainThread and "payments" take two Locks in opposite order
    python_locks.py rlock-call     "holder" holds an RLock across a call (twice) and sleeps
    python_locks.py condition      "producer" sleeps inside `with cond:`; MainThread waits to
                                   enter, "consumer" waits in cond.wait()
    python_locks.py bare-acquire   "holder" took a Lock with acquire() and sleeps
    python_locks.py holder-sleeps  "holder" sleeps inside `with lock:`
    python_locks.py ring           "ab", "bc" and "ca" each hold one Lock (a parameter `mine`)
                                   and wait for the next (`theirs`): a cycle of three

Prints `ready` once every thread is about to block, then never exits by itself. The lines
that hold or wait carry `# MODE holds:` and `# MODE waits:` markers the tests look for.
"""

import sys
import threading
import time

mode = sys.argv[1]


if mode == "lock-order":
    orders = threading.Lock()
    payments = threading.Lock()
    both_hold = threading.Barrier(2)

    def pay():
        with payments:  # lock-order holds: payments
            both_hold.wait()
            with orders:  # lock-order waits: payments
                pass

    threading.Thread(target=pay, name="payments").start()
    with orders:  # lock-order holds: MainThread
        both_hold.wait()
        print("ready", flush=True)
        with payments:  # lock-order waits: MainThread
            pass

elif mode == "rlock-call":
    registry = threading.RLock()
    holding = threading.Event()

    def refresh():
        with registry:  # rlock-call holds: refresh
            holding.set()
            time.sleep(3600)

    def hold():
        with registry:  # rlock-call holds: holder
            refresh()

    threading.Thread(target=hold, name="holder", daemon=True).start()
    holding.wait()
    print("ready", flush=True)
    with registry:  # rlock-call waits: MainThread
        pass

elif mode == "condition":
    cond = threading.Condition()
    consumer_waits = threading.Event()
    holding = threading.Event()

    def consume():
        with cond:
            consumer_waits.set()
            cond.wait()  # condition waits: consumer

    def produce():
        consumer_waits.wait()
        with cond:  # condition holds: producer
            holding.set()
            time.sleep(3600)

    threading.Thread(target=consume, name="consumer", daemon=True).start()
    threading.Thread(target=produce, name="producer", daemon=True).start()
    holding.wait()
    print("ready", flush=True)
    with cond:  # condition waits: MainThread
        pass

elif mode == "bare-acquire":
    gate = threading.Lock()
    holding = threading.Event()

    def hold():
        gate.acquire()  # bare-acquire holds: holder
        holding.set()
        time.sleep(3600)

    threading.Thread(target=hold, name="holder", daemon=True).start()
    holding.wait()
    print("ready", flush=True)
    with gate:  # bare-acquire waits: MainThread
        pass

elif mode == "holder-sleeps":
    lock = threading.Lock()
    holding = threading.Event()

    def hold():
        with lock:  # holder-sleeps holds: holder
            holding.set()
            time.sleep(3600)  # holder-sleeps sleeps: holder

    threading.Thread(target=hold, name="holder", daemon=True).start()
    holding.wait()
    print("ready", flush=True)
    with lock:  # holder-sleeps waits: MainThread
        pass

elif mode == "ring":
    locks = [threading.Lock() for _ in range(3)]
    all_hold = threading.Barrier(4)

    def take(mine, theirs):
        with mine:  # ring holds: take
            all_hold.wait()
            with theirs:  # ring waits: take
                pass

    for i, name in enumerate(["ab", "bc", "ca"]):
        threading.Thread(
            target=take, args=(locks[i], locks[(i + 1) % 3]), name=name, daemon=True
        ).start()
    all_hold.wait()
    print("ready", flush=True)
    threading.Event().wait()

else:
    sys.exit(f"unknown mode {mode}")
