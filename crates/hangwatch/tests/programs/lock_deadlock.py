"""Two threads take two threading.Locks in opposite order and deadlock; the main thread joins.

Prints "ready" once both threads hold their first lock, so the deadlock is certain.
"""
import threading

first = threading.Lock()
second = threading.Lock()
both_hold = threading.Barrier(3)


def forward():
    with first:
        both_hold.wait()
        with second:  # deadlock: "backward" holds it
            pass


def backward():
    with second:
        both_hold.wait()
        with first:  # deadlock: "forward" holds it
            pass


threads = [
    threading.Thread(target=forward, name="forward"),
    threading.Thread(target=backward, name="backward"),
]
for thread in threads:
    thread.start()
both_hold.wait()
print("ready", flush=True)
for thread in threads:
    thread.join()
