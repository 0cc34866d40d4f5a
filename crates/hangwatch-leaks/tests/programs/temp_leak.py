"""Leaves entries in the temporary directory (`TMPDIR`) the way a killed Python program does.

    temp_leak.py fork|spawn|forkserver [ignore-term]
    temp_leak.py tempfile [ignore-term] [--move-in OLD_FILE] [--chown-inside]

With a start method: a `multiprocessing` manager (its server listens on a socket in the
`pymp-*` directory) and a pool of two workers of that start method (with `forkserver`, the fork
server listens on a socket in its own `pymp-*` directory too). With `tempfile`: a `mkdtemp`
directory with a file being written in it, and a `NamedTemporaryFile` held open; `--move-in`
moves OLD_FILE (made before the run) into the directory, `--chown-inside` gives a file in it to
user 65534.

Prints `ready <pid> <entry> ...` (the top-level entries it made, absolute), then sleeps until
killed. The default SIGTERM disposition ends Python without running any cleanup, which is what
leaves these behind; `ignore-term` ignores SIGTERM, so that only SIGKILL ends it.
"""

import multiprocessing as mp
import os
import signal
import sys
import tempfile
import time


def square(x):
    return x * x


def top_level(path):
    """The entry of the temporary directory that PATH is, or is inside of."""
    tmp = tempfile.gettempdir()
    relative = os.path.relpath(path, tmp)
    return os.path.join(tmp, relative.split(os.sep)[0])


def main():
    mode = sys.argv[1]
    args = sys.argv[2:]
    keep = []
    made = set()
    if mode in ("fork", "spawn", "forkserver"):
        ctx = mp.get_context(mode)
        manager = ctx.Manager()
        shared = manager.dict()
        shared["x"] = 1
        pool = ctx.Pool(2)
        assert pool.map(square, [1, 2, 3]) == [1, 4, 9]
        keep += [manager, shared, pool]
        made.add(top_level(manager.address))
        if mode == "forkserver":
            from multiprocessing import forkserver

            made.add(top_level(forkserver._forkserver._forkserver_address))
    elif mode == "tempfile":
        directory = tempfile.mkdtemp()
        partial = open(os.path.join(directory, "partial.bin"), "wb")
        partial.write(b"x" * 4096)
        partial.flush()
        named = tempfile.NamedTemporaryFile(prefix="hangwatch-named-")
        named.write(b"y" * 100)
        named.flush()
        keep += [partial, named]
        made.update([directory, named.name])
        if "--move-in" in args:
            old = args[args.index("--move-in") + 1]
            os.rename(old, os.path.join(directory, "old"))
        if "--chown-inside" in args:
            stranger = os.path.join(directory, "stranger")
            open(stranger, "w").close()
            os.chown(stranger, 65534, 65534)
    else:
        sys.exit(f"unknown mode {mode}")
    if "ignore-term" in args:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ready", os.getpid(), *sorted(made), flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
