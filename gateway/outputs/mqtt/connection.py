"""The MQTT connection's set-up and words: the paho client with its session, credentials and
TLS, and what the sink tells the operator when the broker cannot be reached, refuses us, or
drops us.

Pure functions over the `mqtt:` settings and paho's reason codes, apart from the sink's thread
so each message can be read (and tested) on its own. Passwords never appear in them.
"""

from __future__ import annotations

import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config.models import MqttSection

UNSUPPORTED_PROTOCOL = 0x84
NOT_AUTHORISED = (0x86, 0x87, 4, 5)
BAD_CLIENT_ID = 0x85
UNTRUSTED_ISSUER = (18, 19, 20, 21)
HOSTNAME_MISMATCH = 62


def new_client(settings: MqttSection, client_id: str, *, v5: bool, inflight: int,
               connect_timeout_s: float) -> mqtt.Client:
    """A fresh paho client for one connection: protocol, persistent session, credentials, TLS.
    Its callbacks and Last Will are the caller's; it never reconnects by itself."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=None if v5 else False,
                         protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
                         reconnect_on_failure=False)
    client.connect_timeout = connect_timeout_s
    client.max_inflight_messages_set(inflight)
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    if settings.tls is not None:
        client.tls_set_context(tls_context(settings))
        client.tls_insecure_set(settings.tls.insecure)
    return client


def tls_context(settings: MqttSection) -> ssl.SSLContext:
    """The client TLS context of `mqtt.tls` (the centre's CA, an optional client certificate)."""
    tls = settings.tls
    assert tls is not None
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    return context


def tls_files(settings: MqttSection) -> str:
    tls = settings.tls
    return f"ca_file={tls.ca_file}, cert_file={tls.cert_file}, key_file={tls.key_file}" if tls else ""


def tls_problem(settings: MqttSection, exc: ssl.SSLCertVerificationError) -> str:
    """Why the broker's certificate was rejected, naming the setting to fix."""
    tls = settings.tls
    ca = tls.ca_file if tls and tls.ca_file else "the system CA store"
    if exc.verify_code in UNTRUSTED_ISSUER:
        return (f"TLS certificate of the broker is not signed by the CA in {ca} (mqtt.tls.ca_file): "
                f"{exc.verify_message}")
    if "hostname" in str(exc).lower() or exc.verify_code == HOSTNAME_MISMATCH:
        return (f"TLS certificate of the broker does not match the host name {settings.host!r} "
                f"(CA {ca}): {exc.verify_message}")
    return f"TLS certificate of the broker rejected (CA {ca}): {exc.verify_message or exc}"


def refusal(settings: MqttSection, client_id: str, reason: ReasonCode) -> str:
    """A CONNACK that refused us, with the setting that is likely wrong."""
    hint = ""
    if reason.value in NOT_AUTHORISED:
        user = settings.username
        hint = f" (user {user!r}); check mqtt.username and mqtt.password" if user else \
            "; the broker wants credentials: set mqtt.username and mqtt.password"
    elif reason.value == BAD_CLIENT_ID:
        hint = f" (client id {client_id!r}); check mqtt.client_id"
    return f"refused the connection: {reason}{hint}"


def disconnect_reason(flags: Any, reason_code: ReasonCode) -> str:
    """Why the connection ended, in words: the broker's DISCONNECT, or a lost connection."""
    reason = str(reason_code)
    from_server = getattr(flags, "is_disconnect_packet_from_server", False)
    if not from_server and reason == "Unspecified error":
        return "connection closed: broker stopped or network lost"
    return f"broker sent DISCONNECT: {reason}" if from_server else reason


def closed_before_accepting(settings: MqttSection, reason: str) -> str:
    """The broker hung up before its CONNACK (a refusal, or a client certificate it wants)."""
    tls = settings.tls
    hint = ("; if the broker requires a client certificate, set mqtt.tls.cert_file and key_file"
            if tls is not None and tls.cert_file is None else "")
    return f"closed the connection before accepting it ({reason}){hint}"
