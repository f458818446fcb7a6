"""The webhook output: every alert POSTed as gw.alert/1 JSON to a case system's URL.

The request (one per alert message, in order, from the output's own outbox):

    POST <url>
    Content-Type: application/json; charset=utf-8
    User-Agent: edge-gateway/<version>
    X-Gateway-Id: <gateway id>
    X-Event-Id: <event_id>            the receiver deduplicates on (X-Event-Id, X-Event-Seq)
    X-Event-Seq: <seq>
    X-Signature: sha256=<hex>         with `secret`: HMAC-SHA256(secret, raw body), lowercase hex
    Authorization: Bearer <token>     with `token`

    <the alert payload: compact UTF-8 JSON, exactly the bytes signed>

Any 2xx answer means delivered. Anything else — another status, a redirect (not followed:
configure the final URL), a refused connection, a TLS error, no complete answer within
`timeout_s` — is a failure: the same alert is sent again after a backoff, and the alerts behind
it wait (order is kept). A receiver may therefore see an alert twice; the duplicate has the same
event_id and seq (and the same body, so the same signature).

Limits (gateway/outputs/bounded_http.py): `timeout_s` bounds the WHOLE request — connecting,
sending, the answer's headers — not each read, so a receiver that trickles its answer fails
the request like one that does not answer. Of the answer's body at most `MAX_ANSWER_BYTES` are
read (an error excerpt for the log); a receiver that sends more, or never stops, costs nothing.

Replay protection: the signature covers the body only, and there is deliberately no timestamp
header. A replayed request is byte-for-byte an alert the receiver has already seen (same
event_id/seq), which it must drop anyway because retries produce exactly such duplicates; a
receiver that wants freshness can compare the payload's `updated_at` with its clock.

Verify on the receiving side (Python):

    expected = "sha256=" + hmac.new(secret, request_body, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest(expected, request.headers["X-Signature"])

TLS: the server certificate is verified against the system CAs (or `ca_file`) unless
`verify_tls: false`. The URL is shown in logs and health with any password masked; the secret
and the token never appear anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from typing import Any

from gateway import __version__
from gateway.backoff import Backoff
from gateway.config.outputs import WebhookOutput
from gateway.delivery.durable import DurableSink
from gateway.delivery.sink import AlertSink, DeliveryFailed
from gateway.events.payload import encode_payload
from gateway.outputs.bounded_http import Answer, BoundedPoster, HttpFailure, HttpTimeout
from gateway.outputs.registry import OutputContext, output
from gateway.redaction import redact

MAX_REASON_CHARS = 200
MAX_ANSWER_BYTES = 4096
"""Of an answer's body, this much at most is read: enough for the receiver's error message."""


def signature(secret: bytes, body: bytes) -> str:
    """The X-Signature value: `sha256=` + lowercase hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def omit_snapshot(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload for `snapshots: omit`: the picture is left out (null), everything else stays."""
    return {**payload, "snapshot": None} if payload.get("snapshot") is not None else payload


class WebhookTransport:
    """A `Transport`: one HTTP POST per alert, over a kept-alive connection, bounded in time and memory."""

    def __init__(self, settings: WebhookOutput, gateway_id: str) -> None:
        self.settings = settings
        self.name = settings.sink_name
        self.gateway_id = gateway_id
        self.url = settings.url
        self.shown_url = redact(settings.url)
        self._secret = settings.secret.get_secret_value().encode("utf-8") if settings.secret else None
        self._poster: BoundedPoster | None = None
        self._last_status: int | None = None

    def open(self) -> None:
        headers = {"User-Agent": f"edge-gateway/{__version__}", "X-Gateway-Id": self.gateway_id}
        if self.settings.token is not None:
            headers["Authorization"] = f"Bearer {self.settings.token.get_secret_value()}"
        tls = self._tls_context() if self.url.lower().startswith("https:") else None
        self._poster = BoundedPoster(self.url, tls, headers, MAX_ANSWER_BYTES)

    def _tls_context(self) -> ssl.SSLContext:
        if not self.settings.verify_tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        ca_file = self.settings.ca_file
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def close(self) -> None:
        if self._poster is not None:
            self._poster.close()

    @property
    def alive(self) -> bool:
        return True  # no threads of its own

    def health(self) -> dict[str, Any]:
        return {"url": self.shown_url, "last_status": self._last_status}

    def deliver(self, payload: dict[str, Any], timeout_s: float) -> None:
        """POST one alert; returns on a 2xx answer, raises DeliveryFailed otherwise (also when the
        whole exchange took longer than `timeout_s`)."""
        if self._poster is None:
            raise DeliveryFailed("the webhook output is not started")
        body = encode_payload(payload)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Event-Id": str(payload.get("event_id", "")),
            "X-Event-Seq": str(payload.get("seq", "")),
        }
        if self._secret is not None:
            headers["X-Signature"] = signature(self._secret, body)
        try:
            answer = self._poster.post(body, headers, timeout_s)
        except HttpTimeout:
            raise DeliveryFailed(f"no answer from {self.shown_url} within {timeout_s:g} s "
                                 "(the whole request)") from None
        except HttpFailure as exc:
            raise DeliveryFailed(f"cannot reach {self.shown_url}: {_reason(exc)}") from None
        self._last_status = answer.status
        if not 200 <= answer.status < 300:
            raise DeliveryFailed(f"{self.shown_url} answered HTTP {answer.status} {answer.reason}{_excerpt(answer)}")


def _reason(exc: BaseException) -> str:
    """The innermost cause of a transport error, in one line (certificate problems named as such)."""
    inner: BaseException = exc
    while inner.__context__ is not None and inner.__context__ is not inner:
        inner = inner.__context__
    if isinstance(inner, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected ({inner.verify_message}); set ca_file to the CA that signed it"
    text = str(exc) or str(inner) or type(exc).__name__
    return redact(" ".join(text.split()))[:MAX_REASON_CHARS]


def _excerpt(answer: Answer) -> str:
    """The start of an error body (receivers often say what they did not like), on one line."""
    text = " ".join(answer.excerpt.decode("utf-8", "replace").split())
    return f": {redact(text)[:MAX_REASON_CHARS]}" if text else ""


@output(WebhookOutput)
def build_webhook(settings: WebhookOutput, context: OutputContext) -> AlertSink:
    """A webhook output: the durable one-at-a-time sink around this transport."""
    return DurableSink(
        settings.sink_name, context.outbox, WebhookTransport(settings, context.config.gateway.id),
        backoff=Backoff(settings.retry_min_s, max(settings.retry_min_s, settings.retry_max_s)),
        timeout_s=settings.timeout_s, prepare=omit_snapshot if settings.snapshots == "omit" else None,
    )
