"""Names the running test to ``hangwatch``, so that a hung suite says which test hung.

Installed with the wheel as a ``pytest11`` entry point, so pytest loads it by itself. Under
``hangwatch run`` (or as a service of ``hangwatch up``) it sends, over the systemd notify socket
hangwatch gives the program (``NOTIFY_SOCKET``), ``STATUS=<test id>`` and ``WATCHDOG=1`` when each
test starts, and ``STATUS=<test id> (finished)`` and ``WATCHDOG=1`` when it ends. So::

    hangwatch run --stall 60s -- pytest

bounds every test (setup, call and teardown) to 60 seconds: a test that deadlocks is diagnosed
(every thread, the Python stacks) and stopped, and the summary and the JSON report carry its id
as the last ``STATUS``. Collection and the end of the session send a status too, so a hang while
importing the tests or at exit is named as such.

Outside hangwatch it does nothing: it speaks only when ``NOTIFY_SOCKET`` is set together with
``HANGWATCH_PID`` (set by ``hangwatch run``) or ``HANGWATCH_SERVICE`` (``hangwatch up``), so it
never pets a systemd watchdog. ``-p no:hangwatch`` turns it off.

The notify protocol is one datagram per message on a Unix socket; this is the few lines of it
that are needed, with no dependency. A message that cannot be sent is dropped: the plugin must
never fail a test run.
"""

import os
import socket

#: A STATUS= text is cut to this many characters; test ids with many parameters can be long.
MAX_STATUS = 1000


class Notifier:
    """Sends notify messages to hangwatch's socket; silent once the socket is gone."""

    def __init__(self, address):
        self._address = address
        self._socket = None

    @classmethod
    def from_environment(cls, environ=None):
        """The notifier for hangwatch's socket, or ``None`` when not run by hangwatch."""
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        if not address or not (environ.get("HANGWATCH_PID") or environ.get("HANGWATCH_SERVICE")):
            return None
        if address.startswith("@"):
            # An abstract socket: a NUL byte in place of the "@" on the wire.
            address = "\0" + address[1:]
        elif not address.startswith("/"):
            return None
        return cls(address)

    def send(self, status):
        """Sends ``STATUS=status`` and a heartbeat in one datagram."""
        status = " ".join(status.split())[:MAX_STATUS]
        message = "STATUS={}\nWATCHDOG=1\n".format(status).encode("utf-8", "replace")
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto(message, self._address)
        except OSError:
            # hangwatch has gone, or its socket's buffer is full: a heartbeat that cannot be
            # delivered is not the test's failure.
            pass

    def close(self):
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class _Reporter:
    """The hooks that speak, registered only when there is someone to speak to."""

    def __init__(self, notifier):
        self.notifier = notifier

    def pytest_runtest_logstart(self, nodeid, location):
        self.notifier.send(nodeid)

    def pytest_runtest_logfinish(self, nodeid, location):
        self.notifier.send(nodeid + " (finished)")

    def pytest_sessionfinish(self, session, exitstatus):
        self.notifier.send("pytest: session finished")


_REPORTER_NAME = "hangwatch-reporter"

#: Set while a session reports: a pytest run inside a test (pytester) must not take over the
#: status, which names the outer test that runs it.
_active = False


def _hello():
    """A first heartbeat as soon as pytest loads the plugin, before its configuration and the
    test modules' imports, which can take seconds on a busy machine."""
    notifier = Notifier.from_environment()
    if notifier is not None:
        notifier.send("pytest: starting")
        notifier.close()


_hello()


def pytest_configure(config):
    global _active
    if _active:
        return
    notifier = Notifier.from_environment()
    if notifier is None:
        return
    _active = True
    config.pluginmanager.register(_Reporter(notifier), _REPORTER_NAME)
    notifier.send("pytest: collecting")


def pytest_unconfigure(config):
    global _active
    reporter = config.pluginmanager.get_plugin(_REPORTER_NAME)
    if reporter is not None:
        config.pluginmanager.unregister(reporter, _REPORTER_NAME)
        reporter.notifier.close()
        _active = False
