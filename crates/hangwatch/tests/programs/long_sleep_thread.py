"""Incident 000 in miniature: the main program is done, but a non-daemon thread sleeps 900 s,
so the interpreter waits for it at exit and the process never ends."""
import threading
import time


def poll_later():
    time.sleep(900)


threading.Thread(target=poll_later, name="poller").start()
print("ready", flush=True)
