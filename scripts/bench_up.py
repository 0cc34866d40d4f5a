#!/usr/bin/env python3
"""Benchmarks of `hangwatch up` against other supervisors, in the same run (issue 6).

    cargo build --release
    python3 scripts/bench_up.py --install          # once: peers into ~/.cache/hangwatch-bench
    python3 scripts/bench_up.py [--only hangwatch] [--peers runit,s6] [--figures 1,3]
                                [--diagnose false|true|both] [--runs 50] [--services 50] [--idle-services 200]
                                [--idle-seconds 30] [--json out.json]

Figures (docs/benchmarks.md says exactly what each one measures):
1. restart after a crash, zero backoff: a service's last timestamp before `_exit(1)` to its
   replacement's first one; median and p90 over RUNS restarts. Once with a service that crashes
   at once (a crash loop), once with one that lives 1.1 s first (past runit's and s6's
   one-second spacing of starts).
2. a stalled service (WATCHDOG=1, then silence; bound 1 s) restarted: its replacement's first
   timestamp minus (last heartbeat + 1 s). Only supervisors with a heartbeat watchdog.
3. stop-all of SERVICES services that ignore every polite stop signal, each with a `setsid`
   grandchild, grace 2 s: from the shutdown request to the supervisor's exit, and what is left.
4. idle: the supervisor's CPU over IDLE_SECONDS with IDLE_SERVICES sleeping services, and its
   memory (PSS).
5. start SERVICES services: from the supervisor's exec to the last service's first timestamp.

Every service is one small C program (compiled here with cc) that appends
`KIND NAME PID CLOCK_MONOTONIC_NS` lines to a shared file: `S` at start, `D` just before a
crash, `H` after its last heartbeat, `G` from its setsid grandchild. The supervisors see the
same program, exec'd directly (runit and s6 get a copy of it as `./run`, no shell).

This script makes itself a child subreaper, so everything a supervisor leaves behind (or
daemonises, like PM2's daemon) is reparented to it; after each measurement it kills whatever
is still below it, by PID checked against its start time, and reaps it.
"""

import argparse
import ctypes
import json
import math
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hangwatch-bench"
)
PEERS = ["supervisord", "circus", "runit", "s6", "pm2"]
GRACE_S = 2.0
WATCHDOG_S = 1.0
CRASH_UPTIME_S = 1.1

STAMP_C = r"""
/* A service for supervisor benchmarks: appends "KIND NAME PID MONOTONIC_NS" lines to FILE.
 *   stamp FILE NAME crash [UPTIME_S]      S, live UPTIME_S, D, _exit(1)
 *   stamp FILE NAME sleep                 S, pause forever
 *   stamp FILE NAME ignore-term [setsid-child]
 *                                         S, ignore TERM/INT/HUP/QUIT, optionally fork a child
 *                                         that calls setsid() and writes G, pause forever
 *   stamp FILE NAME stall notify|udp:PORT S, READY=1+WATCHDOG=1 (NOTIFY_SOCKET) or circus's
 *                                         "pid;time" UDP heartbeat, 3 beats 20 ms apart, H,
 *                                         then silence forever
 * With at most one argument, the arguments are read from ./argv, one per line (for runit and
 * s6, which run ./run in the service directory with no argument or the service's name). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int out = -1;
static const char *name = "?";

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void stamp(char kind) {
    char buf[256];
    int n = snprintf(buf, sizeof buf, "%c %s %d %lld\n", kind, name, (int)getpid(), now_ns());
    if (write(out, buf, n) != n) _exit(3);
}

static void beat(const char *how) {
    if (strcmp(how, "notify") == 0) {
        const char *path = getenv("NOTIFY_SOCKET");
        if (!path || !*path) return;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t len = strlen(path);
        if (len >= sizeof sa.sun_path) return;
        memcpy(sa.sun_path, path, len);
        if (path[0] == '@') sa.sun_path[0] = 0;
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        static int first = 1;
        const char *msg = first ? "READY=1\nWATCHDOG=1" : "WATCHDOG=1";
        first = 0;
        sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&sa,
               offsetof(struct sockaddr_un, sun_path) + len);
        close(fd);
    } else if (strncmp(how, "udp:", 4) == 0) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(how + 4))};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        char msg[64];
        int n = snprintf(msg, sizeof msg, "%d;%lld", (int)getpid(), (long long)time(NULL));
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sendto(fd, msg, n, 0, (struct sockaddr *)&sa, sizeof sa);
        close(fd);
    }
}

static void forever(void) {
    for (;;) pause();
}

int main(int argc, char **argv) {
    static char text[4096];
    static char *args[16];
    if (argc <= 2) {
        int fd = open("argv", O_RDONLY);
        ssize_t n = fd < 0 ? -1 : read(fd, text, sizeof text - 1);
        if (n <= 0) return 2;
        args[0] = argv[0];
        argc = 1;
        for (char *line = strtok(text, "\n"); line && argc < 15; line = strtok(NULL, "\n"))
            args[argc++] = line;
        argv = args;
    }
    if (argc < 4) return 2;
    out = open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (out < 0) return 2;
    name = argv[2];
    const char *mode = argv[3];
    stamp('S');
    if (strcmp(mode, "crash") == 0) {
        double up = argc > 4 ? atof(argv[4]) : 0;
        if (up > 0) {
            struct timespec ts = {(time_t)up, (long)((up - (time_t)up) * 1e9)};
            nanosleep(&ts, NULL);
        }
        stamp('D');
        _exit(1);
    }
    if (strcmp(mode, "ignore-term") == 0) {
        int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};
        for (unsigned i = 0; i < sizeof sigs / sizeof *sigs; i++) signal(sigs[i], SIG_IGN);
        if (argc > 4 && strcmp(argv[4], "setsid-child") == 0 && fork() == 0) {
            setsid();
            stamp('G');
        }
        forever();
    }
    if (strcmp(mode, "stall") == 0 && argc > 4) {
        for (int i = 0; i < 3; i++) {
            if (i) usleep(20000);
            beat(argv[4]);
        }
        stamp('H');
        forever();
    }
    if (strcmp(mode, "sleep") == 0) forever();
    return 2;
}
"""


# ---------------------------------------------------------------------------------------------
# Processes: spawn, reap, identity, /proc readings.


class Failed(Exception):
    """A supervisor did not do what the figure needs; the message says what."""


def set_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_CHILD_SUBREAPER = 36
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def now_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def spawn(argv, log, env=None, new_session=True):
    """Starts argv with stdin from /dev/null and stdout+stderr appended to log. Returns the
    PID; `reap` collects it later (no Popen: one reaper for everything)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        actions = [
            (os.POSIX_SPAWN_DUP2, null, 0),
            (os.POSIX_SPAWN_DUP2, fd, 1),
            (os.POSIX_SPAWN_DUP2, fd, 2),
        ]
        return os.posix_spawnp(
            argv[0], argv, env if env is not None else os.environ,
            file_actions=actions, setsid=new_session,
        )
    finally:
        os.close(fd)
        os.close(null)


def reap():
    """Reaps every exited child (ours, or adopted as subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def wait_exit(pid, timeout):
    """The monotonic time (ns) at which pid exited, or None if it is alive after timeout. Exit
    is seen through a pidfd, so it works for processes that are not our children."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return now_ns()
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if poller.poll(max(0, timeout) * 1000):
            return now_ns()
        return None
    finally:
        os.close(fd)


class Exits:
    """Watches several processes' exits through pidfds opened up front."""

    def __init__(self, pids):
        self.fds = []
        for pid in pids:
            try:
                self.fds.append(os.pidfd_open(pid))
            except ProcessLookupError:
                pass

    def wait(self, timeout):
        """The time (ns) at which the last of them exited, or None after timeout."""
        poller = select.poll()
        for fd in self.fds:
            poller.register(fd, select.POLLIN)
        pending, last = set(self.fds), now_ns()
        end = time.monotonic() + timeout
        try:
            while pending:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                for fd, _ in poller.poll(left * 1000):
                    last = now_ns()
                    pending.discard(fd)
                    poller.unregister(fd)
            return last
        finally:
            for fd in self.fds:
                os.close(fd)


def run_cmd(argv, log, timeout=30, env=None):
    """Runs a short command to completion (a supervisor's control tool)."""
    pid = spawn(argv, log, env=env, new_session=False)
    if wait_exit(pid, timeout) is None:
        os.kill(pid, signal.SIGKILL)
        wait_exit(pid, 5)
        reap()
        raise Failed(f"`{' '.join(argv)}` did not finish within {timeout} s")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def stat_fields(pid):
    """Fields 3.. of /proc/PID/stat (after the command name), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def start_time(pid):
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None  # field 22


def alive(pid, started=None):
    """Whether pid is a live (not zombie) process, and the same one when started is given."""
    fields = stat_fields(pid)
    if fields is None or fields[0] in "ZX":
        return False
    return started is None or int(fields[19]) == started


def process_table():
    """{pid: ppid} of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields:
                table[int(entry)] = int(fields[1])
    return table


def descendants(root, table=None):
    table = table if table is not None else process_table()
    children = {}
    for pid, ppid in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_everything_below_us(deadline_s=10):
    """SIGKILLs every descendant of this script (checked by start time) and reaps them."""
    end = time.monotonic() + deadline_s
    while True:
        reap()
        pids = [p for p in descendants(os.getpid()) if alive(p)]
        if not pids:
            return
        if time.monotonic() > end:
            raise SystemExit(f"could not clean up processes {pids}")
        for pid in pids:
            started = start_time(pid)
            if started is not None and alive(pid, started):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.01)


def cpu_ns(pid):
    """CPU time of all live threads of pid, from schedstat (nanoseconds)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def cpu_ticks(pid):
    """utime + stime of pid (all its threads, living and dead), in clock ticks."""
    fields = stat_fields(pid)
    return int(fields[11]) + int(fields[12]) if fields else 0


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def free_port(kind=socket.SOCK_DGRAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# The record the services write.


class Stamps:
    """Reads the shared file the services append to."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.partial = b""
        self.events = []  # (kind, name, pid, t_ns, start_time or None)

    def read(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.events
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            kind, name, pid, t = line.decode().split()
            pid = int(pid)
            self.events.append((kind, name, pid, int(t), start_time(pid)))
        return self.events

    def of(self, kind):
        return [e for e in self.read() if e[0] == kind]

    def wait(self, kind, count, timeout, guard, progress=None):
        """Waits until `count` KIND lines are there, at most `timeout` seconds in all and (when
        given) `progress` seconds without a new one; guard() raises if the supervisor died."""
        start = time.monotonic()
        seen, last = 0, start
        while (have := len(self.of(kind))) < count:
            guard()
            now = time.monotonic()
            if have > seen:
                seen, last = have, now
            if now - start > timeout or (progress is not None and now - last > progress):
                raise Failed(f"{have} of {count} `{kind}` records after {now - start:.0f} s")
            time.sleep(0.002)


# ---------------------------------------------------------------------------------------------
# Supervisors. Each writes its own config into the run's temporary directory, starts in the
# foreground where it can (so its PID is ours to watch), and stops the way its users stop it.


class Service:
    def __init__(self, name, args, watchdog=False):
        self.name = name
        self.args = args  # stamp arguments after FILE NAME
        self.watchdog = watchdog


class Run:
    """One measurement: a temporary directory, a stamp file, a set of services."""

    def __init__(self, tmp, stamp_bin, services, diagnose=False, udp_port=None):
        self.tmp = tmp
        self.stamp_bin = stamp_bin
        self.file = os.path.join(tmp, "stamps")
        open(self.file, "w").close()
        self.services = services
        self.diagnose = diagnose
        self.udp_port = udp_port
        self.log = os.path.join(tmp, "supervisor.log")

    def argv(self, service):
        return [self.stamp_bin, self.file, service.name, *service.args]

    def log_tail(self, lines=8):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-lines:]).strip()
        except FileNotFoundError:
            return ""


def which(*names):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def cached(*parts):
    path = os.path.join(CACHE, *parts)
    return path if os.access(path, os.X_OK) else None


class Supervisor:
    name = "?"
    watchdog = False  # has a heartbeat watchdog (figure 2)

    def __init__(self):
        self.root = None  # the supervisor's main process
        self.run = None

    def missing(self):
        """Why this supervisor cannot run here, or None."""
        return None

    def configure(self, run):
        """Writes the config for run's services."""
        raise NotImplementedError

    def launch(self):
        """Starts the supervisor; sets self.t_exec (just before its exec) and self.root."""
        raise NotImplementedError

    def stop(self):
        """Begins the stop of everything, the way its users do; returns at once or when its
        control tool returns."""
        os.kill(self.root, signal.SIGTERM)

    def guard(self):
        if self.root is not None and not alive(self.root):
            raise Failed(f"{self.name} exited early: {self.run.log_tail() or 'no output'}")

    def helpers(self, services):
        """The supervisor's own processes: its root and every descendant that is not a service
        or below one."""
        table = process_table()
        below_services = set()
        for pid in services:
            below_services.add(pid)
            below_services.update(descendants(pid, table))
        return [self.root] + [p for p in descendants(self.root, table) if p not in below_services]

    def write_run_dirs(self, run, scandir, extra=None):
        """Service directories for runit and s6: ./run is a copy of the stamp program, which
        reads ./argv, so no shell sits between the supervisor and the service."""
        os.makedirs(scandir)
        for service in run.services:
            d = os.path.join(scandir, service.name)
            os.makedirs(d)
            shutil.copy(run.stamp_bin, os.path.join(d, "run"))
            with open(os.path.join(d, "argv"), "w") as f:
                f.write("\n".join([run.file, service.name, *service.args]) + "\n")
            for fname, text in (extra or {}).items():
                with open(os.path.join(d, fname), "w") as f:
                    f.write(text)


def toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return json.dumps(value)  # a TOML basic string for what we write


class Hangwatch(Supervisor):
    name = "hangwatch"
    watchdog = True

    def __init__(self, binary):
        super().__init__()
        self.binary = binary

    def missing(self):
        if not os.access(self.binary, os.X_OK):
            return f"{self.binary} not found: run `cargo build --release`"
        return None

    def configure(self, run):
        self.run = run
        lines = [
            f"state_dir = {toml(os.path.join(run.tmp, 'state'))}",
            'shutdown_timeout = "30s"',
        ]
        for s in run.services:
            lines += [
                "",
                f"[service.{s.name}]",
                f"command = {toml(run.argv(s))}",
                'restart = "always"',
                'backoff = { initial = "0s" }',
                'max_restarts = { count = 100000, within = "1s" }',
                f'stop_grace = "{GRACE_S:g}s"',
            ]
            if s.watchdog:
                lines += [f'watchdog = "{WATCHDOG_S:g}s"', f"diagnose = {toml(run.diagnose)}"]
        self.config = os.path.join(run.tmp, "hangwatch.toml")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def launch(self):
        self.t_exec = now_ns()
        self.root = spawn([self.binary, "up", "-f", self.config], self.run.log)


class Supervisord(Supervisor):
    name = "supervisord"

    def missing(self):
        self.binary = cached("venv", "bin", "supervisord") or which("supervisord")
        return None if self.binary else "not installed (pip install supervisor; see --install)"

    def configure(self, run):
        self.run = run
        # One group: supervisord stops the programs of a group together, but groups one after
        # the other (50 groups of 2 s each would take 100 s). stopasgroup/killasgroup signal the
        # process group, its best effort at a tree.
        lines = [
            "[supervisord]",
            "nodaemon=true",
            f"logfile={run.tmp}/supervisord.log",
            f"pidfile={run.tmp}/supervisord.pid",
            f"childlogdir={run.tmp}",
            "",
            "[group:bench]",
            "programs=" + ",".join(s.name for s in run.services),
        ]
        for s in run.services:
            lines += [
                "",
                f"[program:{s.name}]",
                "command=" + " ".join(run.argv(s)),
                "autorestart=true",
                "startsecs=0",
                "startretries=1000000",
                f"stopwaitsecs={GRACE_S:g}",
                "stopasgroup=true",
                "killasgroup=true",
                "stdout_logfile=NONE",
                "stderr_logfile=NONE",
            ]
        self.config = os.path.join(run.tmp, "supervisord.conf")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def launch(self):
        self.t_exec = now_ns()
        self.root = spawn([self.binary, "-c", self.config], self.run.log)


class Circus(Supervisor):
    name = "circus"
    watchdog = True

    def missing(self):
        self.binary = cached("venv", "bin", "circusd") or which("circusd")
        return None if self.binary else "not installed (pip install circus; see --install)"

    def configure(self, run):
        self.run = run
        lines = [
            "[circus]",
            f"endpoint = ipc://{run.tmp}/circus-ctl",
            f"pubsub_endpoint = ipc://{run.tmp}/circus-pub",
            f"stats_endpoint = ipc://{run.tmp}/circus-stats",
            "statsd = False",
            # circusd reaps and respawns from a periodic check (default every 5 s): 0.1 s
            # is a tuned setting, at some idle cost.
            "check_delay = 0.1",
        ]
        for s in run.services:
            argv = run.argv(s)
            if s.watchdog:
                argv = [*argv[:-1], f"udp:{run.udp_port}"]
            lines += [
                "",
                f"[watcher:{s.name}]",
                "cmd = " + " ".join(argv),
                "numprocesses = 1",
                "respawn = True",
                "warmup_delay = 0",
                f"graceful_timeout = {GRACE_S:g}",
                "stop_children = True",
                "copy_env = True",
            ]
        if any(s.watchdog for s in run.services):
            # The watchdog plugin kills a process with no heartbeat for loop_rate * max_count,
            # checked every loop_rate: a bound of 1 s, checked every 100 ms.
            lines += [
                "",
                "[plugin:watchdog]",
                "use = circus.plugins.watchdog.WatchDog",
                "loop_rate = 0.1",
                f"max_count = {round(WATCHDOG_S / 0.1)}",
                # The default (".*") includes the plugin's own watcher, which then kills itself.
                "watchers_regex = ^("
                + "|".join(s.name for s in run.services if s.watchdog)
                + ")$",
                "ip = 127.0.0.1",
                f"port = {run.udp_port}",
            ]
        self.config = os.path.join(run.tmp, "circus.ini")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def launch(self):
        self.t_exec = now_ns()
        self.root = spawn([self.binary, self.config], self.run.log)


class Runit(Supervisor):
    name = "runit"

    def missing(self):
        self.binary, self.sv = which("runsvdir"), which("sv")
        return None if self.binary and self.sv else "not installed (apt-get install runit)"

    def configure(self, run):
        self.run = run
        self.scandir = os.path.join(run.tmp, "service")
        self.write_run_dirs(run, self.scandir)

    def launch(self):
        self.t_exec = now_ns()
        self.root = spawn([self.binary, "-P", self.scandir], self.run.log)

    def stop(self):
        # runit's own shutdown (runit's stage 3): bring every service down, KILL what is not
        # down after the grace, then HUP runsvdir, which TERMs each runsv and exits.
        dirs = [os.path.join(self.scandir, s.name) for s in self.run.services]
        run_cmd([self.sv, "-w", f"{GRACE_S:g}", "force-stop", *dirs], self.run.log, timeout=60)
        run_cmd([self.sv, "exit", *dirs], self.run.log, timeout=60)
        os.kill(self.root, signal.SIGHUP)


class S6(Supervisor):
    name = "s6"

    def missing(self):
        self.binary = which("s6-svscan")
        return None if self.binary else "not installed (apt-get install s6)"

    def configure(self, run):
        self.run = run
        self.scandir = os.path.join(run.tmp, "scan")
        # timeout-kill: s6-supervise sends KILL this many ms after the down signal.
        self.write_run_dirs(run, self.scandir, {"timeout-kill": f"{int(GRACE_S * 1000)}\n"})

    def launch(self):
        self.t_exec = now_ns()
        self.root = spawn([self.binary, self.scandir], self.run.log)

    # stop: SIGTERM, which s6-svscan takes as `s6-svscanctl -t`: every s6-supervise brings its
    # service down and exits, and s6-svscan waits for them.


class Pm2(Supervisor):
    name = "pm2"

    def missing(self):
        self.binary = cached("npm", "node_modules", ".bin", "pm2") or which("pm2")
        if not which("node"):
            return "node not found"
        return None if self.binary else "not installed (npm install pm2; see --install)"

    def configure(self, run):
        self.run = run
        self.env = dict(os.environ, PM2_HOME=os.path.join(run.tmp, "pm2"))
        apps = [
            {
                "name": s.name,
                "script": run.stamp_bin,
                "args": run.argv(s)[1:],
                "interpreter": "none",
                "exec_mode": "fork",
                "autorestart": True,
                "restart_delay": 0,
                "max_restarts": 1000000,
                "min_uptime": 0,
                "kill_timeout": int(GRACE_S * 1000),
                "treekill": True,
                "out_file": "/dev/null",
                "error_file": "/dev/null",
            }
            for s in run.services
        ]
        self.config = os.path.join(run.tmp, "ecosystem.json")
        with open(self.config, "w") as f:
            json.dump({"apps": apps}, f)

    def launch(self):
        # PM2 is a daemon that its command-line tool starts: the "exec" is the tool's.
        self.t_exec = now_ns()
        code = run_cmd([self.binary, "start", self.config], self.run.log, env=self.env, timeout=60)
        pidfile = os.path.join(self.env["PM2_HOME"], "pm2.pid")
        if code != 0 or not os.path.exists(pidfile):
            raise Failed(f"pm2 start failed ({code}): {self.run.log_tail()}")
        with open(pidfile) as f:
            self.root = int(f.read().strip())

    def stop(self):
        # `pm2 kill` stops every app (SIGINT, KILL after kill_timeout) and then the daemon. It
        # returns when done; it is started here and not awaited, so that the clock measures
        # the daemon's exit.
        spawn([self.binary, "kill"], self.run.log, env=self.env, new_session=False)


SUPERVISORS = {
    "supervisord": Supervisord,
    "circus": Circus,
    "runit": Runit,
    "s6": S6,
    "pm2": Pm2,
}


# ---------------------------------------------------------------------------------------------
# Figures.


def summary_ms(values_ns):
    if not values_ns:
        return {"n": 0}
    ms = sorted(v / 1e6 for v in values_ns)
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p90_ms": ms[max(0, math.ceil(0.9 * len(ms)) - 1)],
        "min_ms": ms[0],
        "max_ms": ms[-1],
    }


def finish(sup, deadline_s=15):
    """Stops the supervisor if it is still up (ignoring how), then kills what is left."""
    try:
        if sup.root is not None and alive(sup.root):
            try:
                sup.stop()
            except (Failed, ProcessLookupError):
                pass
            wait_exit(sup.root, deadline_s)
    finally:
        kill_everything_below_us()


def measure(sup, stamp_bin, services, body, settle=False, **run_options):
    """Runs body(sup, run, stamps) on a started supervisor, then stops it and cleans up.
    settle: wait 1.1 s between writing the config and the exec, so that nothing (runit's scan
    skips a directory modified within the current second) sees a config younger than a second:
    a supervisor normally starts long after its config was written."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{sup.name}-") as tmp:
        run = Run(tmp, stamp_bin, services, **run_options)
        sup.root = None
        try:
            sup.configure(run)
            if settle:
                time.sleep(1.1)
            sup.launch()
            return body(sup, run, Stamps(run.file))
        finally:
            finish(sup)


def fig_restart(sup, stamp_bin, runs, uptime):
    def body(sup, run, stamps):
        stamps.wait("S", runs + 1, 10 + runs * (uptime + 2.5), sup.guard, progress=uptime + 10)
        events = sorted(stamps.read(), key=lambda e: e[3])
        latencies, death = [], None
        for kind, _, _, t, _ in events:
            if kind == "D":
                death = t
            elif kind == "S" and death is not None:
                latencies.append(t - death)
                death = None
        return summary_ms(latencies[:runs])

    return measure(sup, stamp_bin, [Service("crash", ["crash", f"{uptime:g}"])], body)


def fig_stall(sup, stamp_bin, runs, diagnose):
    def body(sup, run, stamps):
        stamps.wait("S", runs + 1, 10 + runs * (WATCHDOG_S + 3), sup.guard,
                    progress=WATCHDOG_S + 10)
        events = sorted(stamps.read(), key=lambda e: e[3])
        late, beat = [], None
        for kind, _, _, t, _ in events:
            if kind == "H":
                beat = t
            elif kind == "S" and beat is not None:
                late.append(t - beat - int(WATCHDOG_S * 1e9))
                beat = None
        return summary_ms(late[:runs])

    service = Service("stall", ["stall", "notify"], watchdog=True)
    return measure(sup, stamp_bin, [service], body, diagnose=diagnose, udp_port=free_port())


def fig_stop_all(sup, stamp_bin, n):
    def body(sup, run, stamps):
        stamps.wait("S", n, 30 + n * 0.2, sup.guard)
        stamps.wait("G", n, 30, sup.guard)
        time.sleep(0.5)
        services = {e[2]: e[4] for e in stamps.of("S")}
        grandchildren = {e[2]: e[4] for e in stamps.of("G")}
        helpers = {p: start_time(p) for p in sup.helpers(services) if p != sup.root}
        # The supervisor is gone when its root and all its helpers (runsv, s6-supervise, …)
        # have exited; their pidfds are opened before the stop begins.
        exits = Exits([sup.root, *helpers])
        t0 = now_ns()
        sup.stop()
        t1 = exits.wait(150)
        if t1 is None:
            raise Failed("the supervisor was still running 150 s after the shutdown request")
        left = lambda pids: sum(alive(p, s) for p, s in pids.items())  # noqa: E731
        return {
            "stop_s": (t1 - t0) / 1e9,
            "services_left": left(services),
            "grandchildren_left": left(grandchildren),
            "services": n,
        }

    services = [Service(f"t{i}", ["ignore-term", "setsid-child"]) for i in range(n)]
    return measure(sup, stamp_bin, services, body)


def fig_idle(sup, stamp_bin, n, seconds):
    def body(sup, run, stamps):
        stamps.wait("S", n, 60 + n * 0.2, sup.guard)
        time.sleep(3)  # let the start settle
        procs = sup.helpers({e[2] for e in stamps.of("S")})
        ns0 = {p: cpu_ns(p) for p in procs}
        ticks0 = {p: cpu_ticks(p) for p in procs}
        t0 = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
        used_ns = sum(cpu_ns(p) - ns0[p] for p in procs if alive(p))
        used_ticks = sum(cpu_ticks(p) - ticks0[p] for p in procs if alive(p))
        hz = os.sysconf("SC_CLK_TCK")
        return {
            "cpu_percent": 100 * used_ns / 1e9 / elapsed,
            "cpu_ms": used_ns / 1e6,
            "cpu_ticks_ms": used_ticks * 1000 / hz,
            "seconds": elapsed,
            "pss_mib": sum(pss_kib(p) for p in procs) / 1024,
            "root_pss_mib": pss_kib(sup.root) / 1024,
            "processes": len(procs),
            "services": n,
        }

    services = [Service(f"s{i}", ["sleep"]) for i in range(n)]
    return measure(sup, stamp_bin, services, body)


def fig_start(sup, stamp_bin, n, reps):
    def body(sup, run, stamps):
        stamps.wait("S", n, 30 + n * 0.2, sup.guard)
        return max(e[3] for e in stamps.of("S")) - sup.t_exec

    services = [Service(f"s{i}", ["sleep"]) for i in range(n)]
    times = [measure(sup, stamp_bin, services, body, settle=True) for _ in range(reps)]
    return summary_ms(times) | {"services": n}


# ---------------------------------------------------------------------------------------------
# Output.


def table(title, rows, columns):
    """rows: {supervisor: dict or str (why not measured)}; columns: [(header, key, format)]."""
    print(f"\n{title}")
    width = max([10] + [len(n) for n in rows]) + 2
    print("  " + "".ljust(width) + "".join(f"{h:>14}" for h, _, _ in columns))
    for name, row in rows.items():
        if isinstance(row, str):
            print(f"  {name.ljust(width)}{row}")
            continue
        cells = []
        for _, key, fmt in columns:
            value = row.get(key)
            cells.append(f"{'-' if value is None else format(value, fmt):>14}")
        print("  " + name.ljust(width) + "".join(cells))
    sys.stdout.flush()


LATENCY = [("median", "median_ms", ".2f"), ("p90", "p90_ms", ".2f"), ("max", "max_ms", ".2f"),
           ("n", "n", "d")]


def attempt(label, fn):
    print(f"  ... {label}", file=sys.stderr, flush=True)
    try:
        return fn()
    except Failed as err:
        return "failed: " + " ".join(str(err).split())


def install():
    """Installs the peers for this user; each failure is reported and skipped."""
    os.makedirs(CACHE, exist_ok=True)
    steps = []
    if shutil.which("apt-get") and os.geteuid() == 0:
        steps.append(["apt-get", "install", "-y", "-q", "runit", "s6"])
    else:
        print("runit, s6: skipped (needs apt-get as root)")
    venv = os.path.join(CACHE, "venv")
    steps.append([sys.executable, "-m", "venv", venv])
    steps.append([os.path.join(venv, "bin", "pip"), "install", "-q", "supervisor", "circus"])
    if shutil.which("npm"):
        steps.append(["npm", "install", "--prefix", os.path.join(CACHE, "npm"), "pm2"])
    else:
        print("pm2: skipped (npm not found)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for step in steps:
        print("$ " + " ".join(step), flush=True)
        code = subprocess.run(step, env=env, check=False).returncode
        if code != 0:
            print(f"  failed ({code}); the benchmark skips what it needed")


def build_stamp(directory):
    source = os.path.join(directory, "stamp.c")
    binary = os.path.join(directory, "stamp")
    with open(source, "w") as f:
        f.write(STAMP_C)
    compiler = which("cc", "gcc", "clang")
    if not compiler:
        raise SystemExit("no C compiler (cc) to build the service program")
    subprocess.run([compiler, "-O2", "-Wall", "-o", binary, source], check=True)
    return binary


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--install", action="store_true",
                        help=f"install the peers (apt, a venv and npm under {CACHE}) and exit")
    parser.add_argument("--only", help="run only these supervisors (comma-separated)")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help=f"peers beside hangwatch (default {','.join(PEERS)}; '' for none)")
    parser.add_argument("--figures", default="1,2,3,4,5")
    parser.add_argument("--diagnose", choices=["false", "true", "both"], default="both",
                        help="figure 2: hangwatch with diagnose = false, true or both (default)")
    parser.add_argument("--runs", type=int, default=50, help="restarts per latency figure")
    parser.add_argument("--services", type=int, default=50, help="services of figures 3 and 5")
    parser.add_argument("--idle-services", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--start-reps", type=int, default=5, help="repetitions of figure 5")
    parser.add_argument("--json", metavar="FILE",
                        help="also write the results as JSON ('-': stdout)")
    parser.add_argument("--hangwatch", default=os.path.join(ROOT, "target", "release", "hangwatch"))
    args = parser.parse_args()
    if args.install:
        install()
        return

    names = ["hangwatch"] + [p for p in args.peers.split(",") if p]
    if args.only:
        names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n != "hangwatch" and n not in SUPERVISORS]
    if unknown:
        raise SystemExit(f"unknown supervisor(s) {unknown}; known: hangwatch, {', '.join(PEERS)}")
    supervisors, skipped = {}, {}
    for n in names:
        sup = Hangwatch(args.hangwatch) if n == "hangwatch" else SUPERVISORS[n]()
        reason = sup.missing()
        if reason:
            skipped[n] = reason
            print(f"{n}: skipped: {reason}")
        else:
            supervisors[n] = sup
    figures = {int(f) for f in args.figures.split(",") if f}

    set_subreaper()
    results = {"skipped": skipped, "figures": {}}
    with tempfile.TemporaryDirectory(prefix="bench-up-") as build:
        stamp_bin = build_stamp(build)
        fig = results["figures"]

        if 1 in figures:
            for key, uptime, runs in (
                ("restart_crash_loop", 0.0, args.runs),
                ("restart_after_uptime", CRASH_UPTIME_S, max(5, args.runs // 5)),
            ):
                fig[key] = {
                    n: attempt(f"figure 1 ({key}): {n}",
                               lambda s=s: fig_restart(s, stamp_bin, runs, uptime))
                    for n, s in supervisors.items()
                }
            table(f"1a. restart after a crash at start, zero backoff: death to the replacement's "
                  f"start (ms, {args.runs} restarts)", fig["restart_crash_loop"], LATENCY)
            table(f"1b. restart after a crash {CRASH_UPTIME_S:g} s after start (ms)",
                  fig["restart_after_uptime"], LATENCY)

        if 2 in figures:
            rows = {}
            for n, s in supervisors.items():
                if not s.watchdog:
                    rows[n] = "cannot: no heartbeat watchdog"
                elif n == "hangwatch":
                    for diagnose in (False, True):
                        if args.diagnose not in ("both", str(diagnose).lower()):
                            continue
                        rows[f"hangwatch (diagnose = {str(diagnose).lower()})"] = attempt(
                            f"figure 2: hangwatch (diagnose = {str(diagnose).lower()})",
                            lambda s=s, d=diagnose: fig_stall(s, stamp_bin, args.runs, d))
                else:
                    rows[n] = attempt(f"figure 2: {n}",
                                      lambda s=s: fig_stall(s, stamp_bin, args.runs, False))
            fig["stall"] = rows
            table(f"2. stalled service (watchdog {WATCHDOG_S:g} s) restarted: replacement's start "
                  f"minus (last heartbeat + bound) (ms)", rows, LATENCY)

        if 3 in figures:
            fig["stop_all"] = {
                n: attempt(f"figure 3: {n}", lambda s=s: fig_stop_all(s, stamp_bin, args.services))
                for n, s in supervisors.items()
            }
            table(f"3. stop-all of {args.services} services ignoring TERM/INT/HUP/QUIT, each "
                  f"with a setsid grandchild, grace {GRACE_S:g} s",
                  fig["stop_all"],
                  [("stop (s)", "stop_s", ".3f"), ("services left", "services_left", "d"),
                   ("grandch. left", "grandchildren_left", "d")])

        if 4 in figures:
            fig["idle"] = {
                n: attempt(f"figure 4: {n}", lambda s=s: fig_idle(
                    s, stamp_bin, args.idle_services, args.idle_seconds))
                for n, s in supervisors.items()
            }
            table(f"4. idle with {args.idle_services} sleeping services over "
                  f"{args.idle_seconds:g} s (all of the supervisor's own processes)",
                  fig["idle"],
                  [("CPU %", "cpu_percent", ".4f"), ("CPU ms", "cpu_ms", ".1f"),
                   ("ticks ms", "cpu_ticks_ms", ".0f"), ("PSS MiB", "pss_mib", ".1f"),
                   ("root PSS MiB", "root_pss_mib", ".1f"), ("processes", "processes", "d")])

        if 5 in figures:
            fig["start"] = {
                n: attempt(f"figure 5: {n}",
                           lambda s=s: fig_start(s, stamp_bin, args.services, args.start_reps))
                for n, s in supervisors.items()
            }
            table(f"5. start {args.services} services: supervisor's exec to the last service's "
                  f"start (ms, {args.start_reps} runs)", fig["start"], LATENCY)

    if args.json:
        text = json.dumps(results, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")


if __name__ == "__main__":
    main()
