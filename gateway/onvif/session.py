"""The base every ONVIF module builds on: errors, the session, settings access and the loop.

The gateway's camera workers are threads, while onvif-zeep-async (zeep + aiohttp) is asyncio.
Everything ONVIF therefore runs on one shared event loop in a daemon thread (`OnvifLoop`), and
threads get small blocking façades (`resolve_camera_sync` in device.py, and the PTZ and event
helpers that take an `OnvifLoop`). The library was chosen over the 2018 `onvif-zeep` because
that one is synchronous, leaks a PullPoint subscription per connect and is unmaintained.

Clock skew matters because WS-Security UsernameToken digests carry a `Created` time that cameras
reject when it differs from their own clock by more than a few seconds: the library's time
adjustment (`adjust_time=True`) offsets our timestamps by the measured difference, and we warn
when the difference exceeds `CLOCK_SKEW_WARN_S` so the installer fixes NTP.

Every failure is one of the `OnvifError` subclasses below (`translate_error` maps whatever the
library, zeep or aiohttp raised onto one). Their messages name `host:port` and what went wrong,
never a credential: the password is masked even if a camera echoes it back.

Public helpers for the sibling modules: `endpoint`, `connection_settings`, `secret`,
`xml_text`, and the service namespaces `EVENTS_NS`, `MEDIA_NS`, `PTZ_NS`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from gateway.redaction import redact

# onvif-zeep-async calls logging.basicConfig() at import time; keep the gateway's logging as it is.
_root = logging.getLogger()
_handlers, _level = list(_root.handlers), _root.level
import aiohttp  # noqa: E402
import zeep.exceptions  # noqa: E402
from onvif import ONVIFCamera, ONVIFService  # noqa: E402
from onvif.definition import SERVICES  # noqa: E402
from onvif.exceptions import ONVIFError  # noqa: E402
from onvif.util import is_auth_error, normalize_url  # noqa: E402

_root.handlers[:] = _handlers
_root.setLevel(_level)
# Request bodies logged at DEBUG carry WS-Security tokens (nonce + digest): never emit them.
logging.getLogger("onvif.zeep_aiohttp").setLevel(logging.INFO)

log = logging.getLogger("gateway.onvif")

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 10.0
CLOCK_SKEW_WARN_S = 5.0
EVENTS_NS = "http://www.onvif.org/ver10/events/wsdl"
MEDIA_NS = "http://www.onvif.org/ver10/media/wsdl"
PTZ_NS = "http://www.onvif.org/ver20/ptz/wsdl"


# --------------------------------------------------------------------------- errors


class OnvifError(Exception):
    """Any ONVIF failure.  `endpoint` is 'host:port'; the message starts with it."""

    def __init__(self, endpoint: str, message: str):
        super().__init__(f"{endpoint}: {message}")
        self.endpoint = endpoint
        self.detail = message


class OnvifUnreachable(OnvifError):
    """No TCP connection (refused, no route, DNS) or the device dropped it."""


class OnvifTimeout(OnvifError):
    """The device accepted the connection but did not answer in time."""


class OnvifNotAuthorized(OnvifError):
    """Wrong user/password (ter:NotAuthorized or HTTP 401), or a clock too far off to adjust."""


class OnvifSoapFault(OnvifError):
    """The device answered with a SOAP fault other than NotAuthorized."""

    def __init__(self, endpoint: str, message: str, code: str = "", subcodes: tuple[str, ...] = ()):
        super().__init__(endpoint, message)
        self.code = code
        self.subcodes = subcodes


class OnvifProtocolError(OnvifError):
    """The answer was not a usable ONVIF document (HTML, garbage, missing fields)."""


class OnvifNotSupported(OnvifError):
    """The device lacks a service we need (media, PTZ, events)."""


class OnvifNoMediaProfile(OnvifError):
    """No media profile with a video encoder, or none matching the configured `profile`."""


# --------------------------------------------------------------------------- settings access


def endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def secret(value: Any) -> str:
    """Plain text of a pydantic SecretStr, a str or None."""
    if value is None:
        return ""
    if hasattr(value, "get_secret_value"):
        return value.get_secret_value()
    return str(value)


def connection_settings(settings: Any) -> tuple[str, int, str, str]:
    """(host, port, user, password) of an `OnvifSettings` (or anything shaped like it)."""
    inner = getattr(settings, "onvif", None)
    if inner is not None and not isinstance(settings, (str, bytes)):
        settings = inner
    return (str(settings.host), int(getattr(settings, "port", 80) or 80),
            str(getattr(settings, "user", "") or ""), secret(getattr(settings, "password", "")))


# --------------------------------------------------------------------------- error translation


def _scrub(text: str, password: str) -> str:
    text = redact(text)
    if password and len(password) >= 3:
        text = text.replace(password, "***").replace(quote(password, safe=""), "***")
    return text


def _fault_text(fault: zeep.exceptions.Fault) -> tuple[str, tuple[str, ...]]:
    subcodes: tuple[str, ...] = ()
    raw = getattr(fault, "subcodes", None)
    if raw:
        subcodes = tuple(getattr(code, "localname", None) or getattr(code, "text", None) or str(code)
                         for code in (raw if isinstance(raw, list) else [raw]))
    return (fault.message or "").strip(), subcodes


def translate_error(error: BaseException, endpoint: str, password: str = "",
                    timeout: float | None = None) -> OnvifError:
    """Map whatever the library, zeep or aiohttp raised onto one named OnvifError."""
    if isinstance(error, OnvifError):
        return error
    if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        within = f" within {timeout:g} s" if timeout else ""
        return OnvifTimeout(endpoint, f"the device did not answer{within}")
    if isinstance(error, zeep.exceptions.Fault):
        reason, subcodes = _fault_text(error)
        reason = _scrub(reason, password)
        code = str(getattr(error, "code", "") or "")
        if any("NotAuthorized" in s for s in subcodes) or is_auth_error(error):
            return OnvifNotAuthorized(
                endpoint, f"not authorized: wrong user or password ({reason or 'ter:NotAuthorized'})")
        sub = f" [{', '.join(subcodes)}]" if subcodes else ""
        return OnvifSoapFault(endpoint, f"SOAP fault{sub}: {reason or code or 'no reason given'}",
                              code, subcodes)
    if isinstance(error, zeep.exceptions.TransportError):
        status = getattr(error, "status_code", 0)
        if status in (401, 403):
            return OnvifNotAuthorized(endpoint, f"not authorized: HTTP {status} (wrong user or password)")
        return OnvifProtocolError(endpoint, f"HTTP {status}: not an ONVIF answer")
    if isinstance(error, (zeep.exceptions.XMLSyntaxError, zeep.exceptions.XMLParseError,
                          zeep.exceptions.ValidationError, zeep.exceptions.LookupError)):
        return OnvifProtocolError(endpoint, f"malformed ONVIF answer: {_scrub(str(error), password)[:200]}")
    if isinstance(error, aiohttp.ClientConnectorError):
        os_error = getattr(error, "os_error", None)
        number = getattr(os_error, "errno", None)
        reason = os.strerror(number).lower() if number else (
            getattr(os_error, "strerror", None) or "cannot connect")
        return OnvifUnreachable(endpoint, f"unreachable ({reason})")
    if isinstance(error, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                          aiohttp.ClientOSError, ConnectionError)):
        return OnvifUnreachable(endpoint, f"connection lost ({type(error).__name__})")
    if isinstance(error, aiohttp.ClientError):
        return OnvifProtocolError(endpoint, f"HTTP error: {_scrub(str(error), password)[:200]}")
    if isinstance(error, ONVIFError):
        cause = error.__cause__ or error.__context__
        if cause is not None and cause is not error:
            return translate_error(cause, endpoint, password, timeout)
        text = _scrub(str(error), password)
        if "support service" in text:
            return OnvifNotSupported(endpoint, text.replace("Unknown error: ", ""))
        return OnvifProtocolError(endpoint, text)
    if isinstance(error, OSError):
        reason = os.strerror(error.errno).lower() if error.errno else type(error).__name__
        return OnvifUnreachable(endpoint, f"unreachable ({reason})")
    if isinstance(error, (AttributeError, KeyError, TypeError, ValueError, IndexError)):
        return OnvifProtocolError(endpoint, f"unexpected ONVIF answer ({type(error).__name__}: "
                                            f"{_scrub(str(error), password)[:120]})")
    return OnvifError(endpoint, f"{type(error).__name__}: {_scrub(str(error), password)[:200]}")


# --------------------------------------------------------------------------- session


class OnvifSession:
    """One connection to one device (the library's ONVIFCamera plus our error handling).

    Use `async with OnvifSession(settings) as session:`; every call goes through `call()`,
    which bounds it in time and turns any failure into an OnvifError.
    """

    def __init__(self, settings: Any, timeout: float = DEFAULT_TIMEOUT_S):
        self.host, self.port, self.user, self._password = connection_settings(settings)
        self.timeout = timeout
        self.endpoint = endpoint(self.host, self.port)
        self.camera: ONVIFCamera | None = None
        self.clock_skew_s = 0.0
        self._extra_services: list[ONVIFService] = []

    async def __aenter__(self) -> OnvifSession:
        await self.open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def open(self) -> None:
        """Read the device clock (adjusting WS-Security times to it) and its service addresses."""
        await self.close()
        self.camera = ONVIFCamera(self.host, self.port, self.user or None, self._password or None,
                                  no_cache=True, adjust_time=True)
        try:
            await self.guard(self.camera.update_xaddrs())
        except BaseException:
            await self.close()
            raise
        diff = self.camera.dt_diff
        self.clock_skew_s = diff.total_seconds() if diff is not None else 0.0
        if abs(self.clock_skew_s) > CLOCK_SKEW_WARN_S:
            log.warning("%s: camera clock is off by %+.0f s; WS-Security times are adjusted to it, "
                        "but set up NTP on the camera (event times and evidence depend on it)",
                        self.endpoint, self.clock_skew_s)

    async def close(self) -> None:
        services, self._extra_services = self._extra_services, []
        for service in services:
            try:
                await service.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        camera, self.camera = self.camera, None
        if camera is not None:
            try:
                await camera.close()
            except Exception:  # noqa: BLE001
                pass

    def error(self, error: BaseException, timeout: float | None = None) -> OnvifError:
        return translate_error(error, self.endpoint, self._password, timeout or self.timeout)

    async def guard(self, awaitable: Awaitable[T], timeout: float | None = None) -> T:
        """Await with a time limit; any failure becomes an OnvifError naming host:port."""
        limit = timeout or self.timeout
        try:
            return await asyncio.wait_for(awaitable, limit)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # noqa: BLE001 - translated, not swallowed
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
            raise self.error(error, limit) from None

    def has_service(self, namespace: str) -> bool:
        return bool(self.camera and self.camera.xaddrs.get(namespace))

    async def service(self, name: str) -> ONVIFService:
        """The library's service proxy for `name` (devicemgmt, media, ptz, events)."""
        assert self.camera is not None, "open() first"
        return await self.guard(self.camera.create_onvif_service(name))

    async def call(self, name: str, operation: str, params: Any = None,
                   timeout: float | None = None) -> Any:
        service = await self.service(name)
        return await self.guard(getattr(service, operation)(params), timeout)

    async def service_at(self, kind: str, xaddr: str, read_timeout: float | None = None) -> ONVIFService:
        """A private service proxy for `kind` ('pullpoint', 'subscription') at `xaddr`.

        The library caches one proxy per binding and closes it when the address changes; a
        subscription manager needs two at once while it replaces a subscription, so these
        proxies are owned (and closed) by the session instead.
        """
        assert self.camera is not None, "open() first"
        definition = SERVICES[kind]
        binding = f"{{{definition['ns']}}}{definition['binding']}"
        wsdl = str(Path(self.camera.wsdl_dir) / definition["wsdl"])
        service = ONVIFService(normalize_url(xaddr) or xaddr, self.user or None, self._password or None,
                               wsdl, True, no_cache=True, dt_diff=self.camera.dt_diff,
                               binding_name=binding, binding_key=(kind, xaddr),
                               read_timeout=int(read_timeout) if read_timeout else None)
        await self.guard(service.setup())
        self._extra_services.append(service)
        return service

    async def drop_service(self, service: ONVIFService | None) -> None:
        if service is None:
            return
        if service in self._extra_services:
            self._extra_services.remove(service)
        try:
            await service.close()
        except Exception:  # noqa: BLE001
            pass


@asynccontextmanager
async def connect(settings: Any, timeout: float = DEFAULT_TIMEOUT_S) -> AsyncIterator[OnvifSession]:
    session = OnvifSession(settings, timeout)
    try:
        await session.open()
        yield session
    finally:
        await session.close()



def xml_text(value: Any) -> str:
    """The text of a zeep value (an element with `_value_1`, a string, a number), stripped."""
    if value is None:
        return ""
    if hasattr(value, "_value_1"):
        value = value._value_1
    return str(value).strip()


# --------------------------------------------------------------------------- loop


class OnvifLoop:
    """One asyncio loop in a daemon thread shared by every ONVIF task of the gateway.

    Listeners and PTZ patrols are long-lived coroutines; with one loop they cost a few sockets
    each instead of a thread each.  Thread-safe: `submit()` from any thread, `run()` to block on
    a result (never from the loop's own thread), `stop()` cancels whatever still runs.
    """

    def __init__(self, name: str = "onvif"):
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> OnvifLoop:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        self.start()
        assert self._loop is not None
        return self._loop

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def alive(self) -> bool:
        """The loop's thread runs (the supervision's name for `running`)."""
        return self.running

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def start(self) -> OnvifLoop:
        with self._lock:
            if self.running:
                return self
            ready = threading.Event()

            def main() -> None:
                loop = asyncio.new_event_loop()
                asyncio.set_event_loop(loop)
                self._loop = loop
                ready.set()
                try:
                    loop.run_forever()
                finally:
                    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                    for task in pending:
                        task.cancel()
                    if pending:
                        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                    loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.close()

            self._thread = threading.Thread(target=main, name=self.name, daemon=True)
            self._thread.start()
            ready.wait()
        return self

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("OnvifLoop.run() called from the loop's own thread")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def call_soon(self, callback: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(callback, *args)

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            if thread.is_alive():
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout)
            self._loop = self._thread = None
