"""Holds sockets and files open for the descriptor tests of hangwatch-diagnose, then sleeps.

    python3 fd_holder.py tcp-server                 listen on 127.0.0.1:0, accept one connection
    python3 fd_holder.py tcp-client PORT            connect to 127.0.0.1:PORT
    python3 fd_holder.py unix-server PATH accept    listen on PATH, accept one connection
    python3 fd_holder.py unix-server PATH no-accept listen on PATH, never accept
    python3 fd_holder.py unix-client PATH           connect to PATH
    python3 fd_holder.py files DIR                  open DIR/kept.log for writing, and
                                                    DIR/gone.tmp read-write, then unlink it

Each step prints one line with the descriptor numbers once they are in place, which is what
the tests wait on, and the program then sleeps until it is killed. Standard library only.
"""

import os
import socket
import sys
import time


def ready(*words):
    print(*words, flush=True)


def main():
    mode = sys.argv[1]
    held = []
    if mode == "tcp-server":
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        ready("listening", server.getsockname()[1], server.fileno())
        conn, _ = server.accept()
        held += [server, conn]
        ready("accepted", conn.fileno())
    elif mode == "tcp-client":
        conn = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
        held.append(conn)
        ready("connected", conn.fileno())
    elif mode == "unix-server":
        server = socket.socket(socket.AF_UNIX)
        server.bind(sys.argv[2])
        server.listen()
        held.append(server)
        ready("listening", server.fileno())
        if sys.argv[3] == "accept":
            conn, _ = server.accept()
            held.append(conn)
            ready("accepted", conn.fileno())
    elif mode == "unix-client":
        conn = socket.socket(socket.AF_UNIX)
        conn.connect(sys.argv[2])
        held.append(conn)
        ready("connected", conn.fileno())
    elif mode == "files":
        kept = open(os.path.join(sys.argv[2], "kept.log"), "w")
        gone = open(os.path.join(sys.argv[2], "gone.tmp"), "w+")
        os.unlink(gone.name)
        held += [kept, gone]
        ready("files", kept.fileno(), gone.fileno())
    else:
        sys.exit(f"unknown mode {mode}")
    time.sleep(120)


if __name__ == "__main__":
    main()
