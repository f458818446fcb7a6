"""How many wrong credentials a client may send: a sliding window per client (pure logic; the
clock is passed in).

Every way in counts alike (Bearer header, session cookie, login form, kiosk link), so a guesser
cannot switch paths to get more tries. The rules:

- a client (an IPv4 address, or an IPv6 /64: one host there owns billions of addresses) with
  `per_client` failures in `window_s` waits until the oldest one leaves the window;
- once `overall` failures happened in the window from anywhere, every client that has failed
  at least once waits too, so many addresses buy a guesser little; a client that has not
  guessed wrong is never held back, so the officer with the right token still gets in;
- the same wrong value sent again by the same client counts once: a wall screen polling with
  a session cookie from before a token change, or a script with an outdated token, fails
  without locking its address out.

Memory is bounded: at most `max_clients` clients are remembered (the longest quiet go first),
each with at most `per_client` failures (a held-back client's tries are not compared at all).
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
from collections import OrderedDict, deque

MAX_CLIENTS = 4096


def client_key(address: str) -> str:
    """Who is counted: the address itself, or the /64 network of an IPv6 address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)


def fingerprint(value: str) -> str:
    """What is remembered of a wrong value: enough to know it again, nothing to recover it."""
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:16]


class AuthThrottle:
    """Failed authentications per client and overall within a sliding window."""

    def __init__(self, per_client: int = 5, overall: int = 20, window_s: float = 300.0,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.per_client = per_client
        self.overall = overall
        self.window_s = window_s
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[tuple[float, str]]] = OrderedDict()
        self._all: deque[float] = deque(maxlen=overall)  # only the latest `overall` matter
        self._lock = threading.Lock()

    def retry_after(self, client: str, now: float) -> float:
        """Seconds until `client` may try again (0: now)."""
        with self._lock:
            self._expire(now)
            mine = self._failures.get(client_key(client))
            if not mine:
                return 0.0
            waits = [0.0]
            if len(mine) >= self.per_client:
                waits.append(mine[-self.per_client][0] + self.window_s - now)
            if len(self._all) >= self.overall:
                waits.append(self._all[-self.overall] + self.window_s - now)
            return max(waits)

    def failed(self, client: str, now: float, value: str) -> int | None:
        """Record a wrong `value` from `client`: its failures in the window, or None when it
        sent this same value before (not counted again)."""
        mark = fingerprint(value)
        key = client_key(client)
        with self._lock:
            self._expire(now)
            mine = self._failures.setdefault(key, deque())
            self._failures.move_to_end(key)
            if any(seen == mark for _, seen in mine):
                return None
            mine.append((now, mark))
            while len(mine) > self.per_client:
                mine.popleft()
            self._all.append(now)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
            return len(mine)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client_key(client), None)

    def _expire(self, now: float) -> None:
        horizon = now - self.window_s
        while self._all and self._all[0] <= horizon:
            self._all.popleft()
        for key in list(self._failures):
            times = self._failures[key]
            while times and times[0][0] <= horizon:
                times.popleft()
            if not times:
                del self._failures[key]
