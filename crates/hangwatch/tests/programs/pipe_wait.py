"""A process blocked reading a pipe whose write end is held by its sibling, which never writes.

The parent starts the writer (holding the write end, asleep) and the reader (reading its
stdin), closes its own ends and waits for both. Prints "ready <writer pid> <reader pid>".
"""
import os
import subprocess
import sys

read_end, write_end = os.pipe()
writer = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(600)", "pipe-writer"], stdout=write_end
)
reader = subprocess.Popen(
    [sys.executable, "-c", "import sys; sys.stdin.buffer.read()", "pipe-reader"],
    stdin=read_end,
)
os.close(read_end)
os.close(write_end)
print("ready", writer.pid, reader.pid, flush=True)
reader.wait()
writer.wait()
