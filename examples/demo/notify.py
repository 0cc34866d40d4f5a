"""The systemd notify protocol in a few lines (what libsystemd's sd_notify does)."""

import os
import socket


def notify(message: str) -> None:
    """Sends MESSAGE (for example "READY=1") to the supervisor, if there is one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)
