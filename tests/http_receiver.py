"""A real HTTP endpoint for webhook tests: a threaded `http.server` on 127.0.0.1.

    receiver = Receiver().start()          # or Receiver(tls=make_tls_files(...)) for https
    receiver.url("/alerts")
    receiver.status = 503                  # answer every POST with 503 from now on
    receiver.hold()                        # keep answers back (a far end that hangs) ...
    receiver.release()                     # ... until released
    receiver.stop(); receiver.start()      # an outage: the port refuses connections, then the
                                           # same port serves again
    receiver.wait_for(lambda requests: len(requests) >= 3, timeout=30)

Every request is recorded (`requests`) with its headers, raw body and the status it got.
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

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

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._released = threading.Event()
        self._released.set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/alerts") -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver._released.wait(60)
                status = receiver.status
                headers = {key.lower(): value for key, value in self.headers.items()}
                self.send_response(status)
                reply = b'{"ok":true}' if 200 <= status < 300 else b'{"error":"try later"}'
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                try:
                    self.wfile.write(reply)
                except OSError:  # the client gave up (its timeout); it will retry
                    pass
                with receiver._cond:
                    receiver.requests.append(Request(self.path, headers, body, status))
                    receiver._cond.notify_all()

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

    def stop(self) -> None:
        """Stop serving and close the port (clients now get 'connection refused')."""
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
