"""A real HTTP endpoint for webhook tests: a threaded `http.server` on 127.0.0.1.

    receiver = Receiver().start()          # or Receiver(tls=make_tls_files(...)) for https
    receiver.url("/alerts")
    receiver.status = 503                  # answer every POST with 503 from now on
    receiver.hold()                        # keep answers back (a far end that hangs) ...
    receiver.release()                     # ... until released
    receiver.reply = "huge"                # answer with a 100 MB body (Content-Length)
    receiver.reply = "endless"             # ... with a chunked body that never ends
    receiver.reply = "trickle"             # ... one byte every `trickle_every_s` (for minutes)
    receiver.stop(); receiver.start()      # an outage: the port refuses connections, then the
                                           # same port serves again
    receiver.wait_for(lambda requests: len(requests) >= 3, timeout=30)

Every request is recorded (`requests`) with its headers, raw body and the status it got.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from mqtt_broker import HOST, TlsFiles, free_port


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    tls: TlsFiles | None = None
    port: int = field(default_factory=free_port)
    status: int = 200
    requests: list[Request] = field(default_factory=list)
    reply: Literal["normal", "huge", "endless", "trickle"] = "normal"
    huge_bytes: int = 100 * 1024 * 1024
    trickle_every_s: float = 1.0

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._released = threading.Event()
        self._released.set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def url(self, path: str = "/alerts") -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self
        self._stopping.clear()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.reply != "normal":
                    receiver._record(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                             receiver.status))
                    self.close_connection = True
                    try:
                        receiver._misbehave(self.wfile)
                    except OSError:  # the client hung up: what a well-behaved client does here
                        pass
                    return
                receiver._released.wait(60)
                status = receiver.status
                # Recorded before the answer goes out: once the client has it, it may send the next
                # alert at once, on a connection another thread serves, and that one must not be
                # recorded first.
                receiver._record(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                reply = b'{"ok":true}' if 200 <= status < 300 else b'{"error":"try later"}'
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                try:
                    self.wfile.write(reply)
                except OSError:  # the client gave up (its timeout); it will retry
                    pass

            def log_message(self, *_args: Any) -> None:
                pass

        server = ThreadingHTTPServer((HOST, self.port), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.tls.server_cert), str(self.tls.server_key))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"receiver-{self.port}", daemon=True)
        self._thread.start()
        return self

    def _record(self, request: Request) -> None:
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    def _misbehave(self, out: Any) -> None:
        """Answer as `reply` says: far more than anyone should read, or far too slowly."""
        head = f"HTTP/1.1 {self.status} Whatever\r\nContent-Type: text/plain\r\n"
        block = b"x" * 65536
        if self.reply == "huge":
            out.write(f"{head}Content-Length: {self.huge_bytes}\r\n\r\n".encode())
            for _ in range(self.huge_bytes // len(block)):
                out.write(block)
        elif self.reply == "endless":
            out.write(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
            while not self._stopping.is_set():
                out.write(b"%x\r\n%s\r\n" % (len(block), block))
        else:  # a complete, valid answer of 10 minutes at one byte at a time
            answer = f"{head}X-Padding: {'p' * 600}\r\nContent-Length: 2\r\n\r\nok".encode()
            for byte in answer:
                if self._stopping.wait(self.trickle_every_s):
                    return
                out.write(bytes([byte]))
                out.flush()

    def stop(self) -> None:
        """Stop serving and close the port (clients now get 'connection refused')."""
        self._stopping.set()
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(10)
            self._server = None

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def delivered(self) -> list[Request]:
        """Requests answered with 2xx."""
        with self._cond:
            return [request for request in self.requests if 200 <= request.status < 300]

    def wait_for(self, predicate: Callable[[list[Request]], bool], timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(list(self.requests)), timeout)
