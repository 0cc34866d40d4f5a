"""Incident 001 in miniature: a watchdog observer thread and an asyncio loop deadlock.

The observer's callback takes a lock and then waits for a coroutine on the loop with
run_coroutine_threadsafe(...).result(); meanwhile the loop's periodic status task wants the
same lock, synchronously. Each waits for the other for ever. Usage: observer_loop_deadlock.py DIR
"""
import asyncio
import pathlib
import sys
import threading
import time

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

state_lock = threading.Lock()
watched = pathlib.Path(sys.argv[1])


async def handle(path):
    return path


class NewTask(FileSystemEventHandler):
    def __init__(self, loop):
        self.loop = loop

    def on_created(self, event):
        with state_lock:
            time.sleep(0.3)  # the loop's status task comes for the lock meanwhile
            future = asyncio.run_coroutine_threadsafe(handle(event.src_path), self.loop)
            future.result()  # deadlock: the loop is blocked on state_lock


async def write_status():
    while True:
        with state_lock:  # deadlock: the observer's callback holds it
            pass
        await asyncio.sleep(0.05)


async def main():
    observer = Observer()
    observer.schedule(NewTask(asyncio.get_running_loop()), str(watched))
    observer.start()
    status = asyncio.create_task(write_status())
    await asyncio.sleep(0.2)
    (watched / "task.json").write_text("{}")
    print("ready", flush=True)
    await status


asyncio.run(main())
