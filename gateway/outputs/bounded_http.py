"""One HTTP POST that a misbehaving far end cannot stretch in time or memory.

A webhook receiver is a stranger's server. Two ways it could hurt the gateway with an ordinary
HTTP client:

- memory: the client reads the whole answer. A 200 with a 100 MB body, or a chunked answer
  that never ends, grows the gateway until the kernel kills it. Here at most `max_answer`
  bytes of the body are read (enough for an error excerpt); the rest is never received, and
  the connection is closed instead of reused.
- time: a client's timeout is per socket operation. A receiver that sends one byte every few
  seconds never trips it, and holds every alert behind the current one for as long as it
  likes while the output looks connected. Here the WHOLE request (connect, TLS handshake,
  sending, the answer's headers and the excerpt) has one deadline: every socket operation
  waits at most for what is left of it (`DeadlineBackend`), so the request ends by then.

httpcore (the engine under httpx) does the HTTP/1.1 and TLS; only its network backend is
wrapped. Name resolution is the one step not bounded (the system resolver has its own
timeouts). Redirects are not followed and no proxy from the environment is used.
"""

from __future__ import annotations

import base64
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import httpcore

HttpTimeout = httpcore.TimeoutException
"""Raised when the far end did not answer completely within the deadline."""
HttpFailure = (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, ssl.SSLError, OSError)
"""Raised when the far end cannot be reached or does not speak HTTP."""


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    excerpt: bytes
    """The first `max_answer` bytes of the body at most."""


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own socket backend, with every operation's timeout cut to what is left of the
    calling thread's current deadline (`within`), and a timeout error once nothing is left."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()
        self._local = threading.local()

    @contextmanager
    def within(self, seconds: float) -> Iterator[None]:
        self._local.deadline = time.monotonic() + seconds
        try:
            yield
        finally:
            self._local.deadline = None

    def clamp(self, timeout: float | None, expired: type[Exception]) -> float | None:
        deadline = getattr(self._local, "deadline", None)
        if deadline is None:
            return timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise expired("the request's deadline passed")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, self.clamp(timeout, httpcore.ConnectTimeout), local_address,
                                         socket_options)
        return DeadlineStream(stream, self)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, self.clamp(timeout, httpcore.ConnectTimeout), socket_options)
        return DeadlineStream(stream, self)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose reads, writes and TLS handshake wait no longer than the deadline."""

    def __init__(self, inner: httpcore.NetworkStream, backend: DeadlineBackend) -> None:
        self._inner = inner
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._backend.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._backend.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        # CPython bounds the whole handshake by the socket timeout, not each of its reads.
        handshake_s = self._backend.clamp(timeout, httpcore.ConnectTimeout)
        inner = self._inner.start_tls(ssl_context, server_hostname, handshake_s)
        return DeadlineStream(inner, self._backend)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class BoundedPoster:
    """POSTs to one URL over a kept-alive connection, each request bounded in time and memory."""

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None, headers: dict[str, str],
                 max_answer: int) -> None:
        """headers: sent with every request (a Basic Authorization is added for a URL with
        `user:password@`, as browsers and httpx do)."""
        self.url = url
        self.max_answer = max_answer
        self._headers = {**_basic_auth(url), **headers}
        self._backend = DeadlineBackend()
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=self._backend,
                                             max_connections=1, keepalive_expiry=30.0)

    def post(self, body: bytes, headers: dict[str, str], timeout_s: float) -> Answer:
        """Send `body`; the answer's status and the start of its body. Raises HttpTimeout when
        the whole exchange is not over within `timeout_s`, HttpFailure when the far end cannot
        be reached or answers nonsense."""
        sent = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in {**self._headers, **headers}.items()]
        limits = {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}
        with self._backend.within(timeout_s):
            with self._pool.stream("POST", self.url, headers=sent, content=body,
                                   extensions={"timeout": limits}) as response:
                excerpt = _read_at_most(response.iter_stream(), self.max_answer)
        reason = response.extensions.get("reason_phrase", b"")
        return Answer(response.status, reason.decode("latin-1", "replace") if isinstance(reason, bytes) else "",
                      excerpt)

    def close(self) -> None:
        self._pool.close()


def _read_at_most(chunks: Iterable[bytes], limit: int) -> bytes:
    """The first `limit` bytes; leaving the rest unread makes httpcore close the connection."""
    taken = bytearray()
    for chunk in chunks:
        taken += chunk[: limit - len(taken)]
        if len(taken) >= limit:
            break
    return bytes(taken)


def _basic_auth(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return {}
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
