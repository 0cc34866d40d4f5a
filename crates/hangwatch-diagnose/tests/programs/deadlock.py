"""Two threads take two locks in opposite order and deadlock; the main thread waits for them.

Prints `ready NAME=TID ...` (each thread's kernel thread ID) once both threads hold their first
lock, then never exits by itself. The lines the threads block on carry `# blocks:` markers that
the tests look for.
"""

import threading

first_lock = threading.Lock()
second_lock = threading.Lock()
both_hold_one = threading.Barrier(3)
native_ids = {}


def take_first_then_second():
    native_ids[threading.current_thread().name] = threading.get_native_id()
    with first_lock:
        both_hold_one.wait()
        with second_lock:  # blocks: take_first_then_second
            pass


def take_second_then_first():
    native_ids[threading.current_thread().name] = threading.get_native_id()
    with second_lock:
        both_hold_one.wait()
        first_lock.acquire()  # blocks: take_second_then_first


workers = [
    threading.Thread(target=take_first_then_second, name="first-worker"),
    threading.Thread(target=take_second_then_first, name="second-worker"),
]
for worker in workers:
    worker.start()
native_ids[threading.current_thread().name] = threading.get_native_id()
both_hold_one.wait()
print("ready", *(f"{name}={tid}" for name, tid in sorted(native_ids.items())), flush=True)
for worker in workers:
    worker.join()  # blocks: <module>
