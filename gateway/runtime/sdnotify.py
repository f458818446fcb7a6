"""systemd's notify protocol: READY=1 once the gateway runs, WATCHDOG=1 while it is healthy.

A datagram to $NOTIFY_SOCKET is the whole protocol, so it is written out here rather than
pulling in a package. Outside systemd (no NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        if self.address and self.address.startswith("@"):
            self.address = "\0" + self.address[1:]  # abstract socket namespace
        usec = env.get("WATCHDOG_USEC")
        self.watchdog_interval_s = int(usec) / 1e6 / 2 if usec and usec.isdigit() else None
        """Feed the watchdog twice per WatchdogSec, as sd_watchdog_enabled(3) recommends."""

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as error:
            log.warning("systemd notification %s failed: %s", fields[0], error)

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def watchdog(self, status: str) -> None:
        self.notify("WATCHDOG=1", f"STATUS={status}")

    def reloading(self) -> None:
        self.notify("RELOADING=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")
