"""A server as many are written: it listens on a Unix socket file and holds a lock file, and
removes neither when it is killed.

    socket_and_lock.py DIR

Creates DIR/server.sock (listening) and DIR/server.lock (flock'ed), prints `ready <pid>`, then
waits to be stopped.
"""

import fcntl
import os
import socket
import sys
import time

directory = sys.argv[1]
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(os.path.join(directory, "server.sock"))
server.listen()
lock = open(os.path.join(directory, "server.lock"), "w")
fcntl.flock(lock, fcntl.LOCK_EX)
print("ready", os.getpid(), flush=True)
time.sleep(60)
