"""The programs of scripts/soak: one misbehaviour (or good behaviour) each, chosen by argv[1].

Copied into the soak's temporary directory and run by `hangwatch up` as its services. Stdlib
only. Every shared-memory object a mode makes is named `hwsoak-TAG-…` (TAG: the run's, from
$HWSOAK_TAG), so that the soak can tell its own leftovers from anyone else's; temporary files go
to the run's private TMPDIR.
"""

import mmap
import os
import random
import resource
import signal
import socket
import sys
import tempfile
import threading
import time

SERVICE = os.environ.get("HANGWATCH_SERVICE", "unknown")
RUN = os.environ.get("HANGWATCH_RESTARTS", "0")
TAG = os.environ.get("HWSOAK_TAG", "x")  # this soak's own: names in /dev/shm are global


def notify(message):
    """One datagram on $NOTIFY_SOCKET (the systemd protocol); nothing when there is none."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message if isinstance(message, bytes) else message.encode(), path)


def ping_for(seconds, every=0.1):
    """WATCHDOG=1 for a while (READY=1 first), then return."""
    notify("READY=1")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        notify("WATCHDOG=1")
        time.sleep(every)


def sleep_forever():
    while True:
        time.sleep(3600)


def crash(signame):
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core files from SEGV/ABRT/BUS
    time.sleep(0.3)
    os.kill(os.getpid(), getattr(signal, "SIG" + signame))
    time.sleep(5)
    sys.exit(99)  # the signal did not kill: say so in the exit status


def deadlock():
    ping_for(0.5)
    a, b = threading.Lock(), threading.Lock()

    def other():
        with b:
            time.sleep(0.1)
            with a:
                pass

    threading.Thread(target=other, daemon=True).start()
    with a:
        time.sleep(0.1)
        with b:
            pass


def heartbeat_file(path, forever):
    notify("READY=1")
    end = time.monotonic() + (1e9 if forever else 0.5)
    while time.monotonic() < end:
        with open(path, "w") as f:
            f.write(str(time.time()))
        time.sleep(0.1)
    sleep_forever()


def silence():
    for i in range(5):
        print(f"speaking {i}", flush=True)
        time.sleep(0.1)
    sleep_forever()


def memory():
    chunks = []
    for _ in range(64):
        chunks.append(bytearray(os.urandom(1)) * (4 << 20))  # 4 MiB, every page touched
        time.sleep(0.05)
    sleep_forever()


def ignore_term(stall):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if stall:
        ping_for(0.5)
        sleep_forever()
    notify("READY=1")
    while True:
        notify("WATCHDOG=1")
        time.sleep(0.2)


def double_fork():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            # The escaped daemon: lives until someone kills it.
            os.closerange(0, 3)
            sleep_forever()
        os._exit(0)
    os.wait()
    time.sleep(0.5)
    sys.exit(1)


def shm_leak():
    path = f"/dev/shm/hwsoak-{TAG}-{SERVICE}-{RUN}"
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_EXCL, 0o600)
    os.ftruncate(fd, 4096)
    m = mmap.mmap(fd, 4096)
    m[:5] = b"leak!"
    time.sleep(3.0)
    sys.exit(1)


def tmp_leak():
    d = tempfile.mkdtemp(prefix=f"hwsoak-{SERVICE}-{RUN}-")
    f = open(os.path.join(d, "data"), "w")
    f.write("leak")
    f.flush()
    time.sleep(3.0)
    sys.exit(1)


def tidy():
    """Makes and removes temporary files and shared memory all the time: must leave nothing."""
    notify("READY=1")
    n = 0
    while True:
        fd, path = tempfile.mkstemp(prefix=f"hwsoak-tidy-{SERVICE}-")
        os.write(fd, b"x" * 100)
        os.close(fd)
        os.unlink(path)
        shm = f"/dev/shm/hwsoak-{TAG}-tidy-{SERVICE}-{os.getpid()}-{n}"
        fd = os.open(shm, os.O_CREAT | os.O_RDWR, 0o600)
        os.ftruncate(fd, 4096)
        os.close(fd)
        os.unlink(shm)
        n += 1
        notify("WATCHDOG=1")
        time.sleep(0.1)


def flood(pause):
    """Bursts of 100 kB, `pause` seconds apart (0.1: about 1 MB/s of 200-byte lines, a rotation
    every second; 0: two-byte lines, as `yes` writes them, as fast as the pipe takes them)."""
    line = b"flood " + b"x" * 200 + b"\n" if pause else b"y\n"
    block = line * (100_000 // len(line))
    out = sys.stdout.buffer
    while True:
        out.write(block)
        out.flush()
        if pause:
            time.sleep(pause)


def notify_garbage():
    """A healthy service that also sends garbage on its own notify socket."""
    rng = random.Random(os.getpid())
    notify("READY=1")
    junk = [
        b"",
        b"\0\0\0",
        b"WATCHDOG",
        b"WATCHDOG=0",
        b"READY=1\nSTATUS=" + b"\xff\xfe" * 100,
        b"MAINPID=1",
        b"MAINPID=notanumber",
        b"WATCHDOG_USEC=bogus",
        b"EXTEND_TIMEOUT_USEC=-5",
        b"=\n=\n==",
        b"STATUS=" + b"s" * 4000,
    ]
    while True:
        notify("WATCHDOG=1")
        try:
            notify(rng.choice(junk) if rng.random() < 0.7 else os.urandom(rng.randrange(1, 512)))
        except OSError:
            pass
        time.sleep(0.1)


def fd_hog():
    """Holds every descriptor its RLIMIT_NOFILE allows (lowered to the usual 1024 first: each
    look at the tree reads them all), and stays healthy."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 1024), hard))
    notify("READY=1")
    path = os.environ["NOTIFY_SOCKET"]
    if path.startswith("@"):
        path = "\0" + path[1:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    held = []
    try:
        while True:
            held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    print(f"holding {len(held)} descriptors", flush=True)
    while True:
        sock.sendto(b"WATCHDOG=1", path)
        time.sleep(0.2)


def tcp(port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)
    while True:
        conn, _ = srv.accept()
        conn.close()


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "crash":
        crash(args[0])
    elif mode == "exit":
        time.sleep(0.2)
        sys.exit(int(args[0]))
    elif mode == "deadlock":
        deadlock()
    elif mode == "watchdog-stops":
        ping_for(0.5)
        sleep_forever()
    elif mode == "heartbeat-stops":
        heartbeat_file(args[0], forever=False)
    elif mode == "heartbeat":
        heartbeat_file(args[0], forever=True)
    elif mode == "silence":
        silence()
    elif mode == "memory":
        memory()
    elif mode == "ignore-term-stall":
        ignore_term(stall=True)
    elif mode == "ignore-term":
        ignore_term(stall=False)
    elif mode == "double-fork":
        double_fork()
    elif mode == "shm-leak":
        shm_leak()
    elif mode == "tmp-leak":
        tmp_leak()
    elif mode == "tidy":
        tidy()
    elif mode == "flood":
        flood(float(args[0]) if args else 0.1)
    elif mode == "notify":
        notify("READY=1")
        while True:
            notify("WATCHDOG=1")
            time.sleep(0.2)
    elif mode == "notify-garbage":
        notify_garbage()
    elif mode == "fd-hog":
        fd_hog()
    elif mode == "tcp":
        tcp(int(args[0]))
    elif mode == "sleep":
        sleep_forever()
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
