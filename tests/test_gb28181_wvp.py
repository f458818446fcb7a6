"""Registration against a WVP-faithful registrar, with a fake clock: the digest checked exactly
as WVP's DigestServerAuthenticationHelper does (nc formatted %08x and upper-cased before
hashing; a digest that does not match is answered 403 "wrong password", never a new 401), and
WVP's RegisterRequestProcessor rules (a refresh on the registered Call-ID is accepted without a
check; a REGISTER without credentials gets 401 with a fresh nonce). The device must survive 100
refresh cycles and a platform restart; the clock skew comes from the 200's Date."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.outputs.gb28181.sip import SipRequest, SipResponse, parse_message, response_to
from test_gb28181_device import DEVICE, PASSWORD, Harness

REALM = "3402000000"
SHANGHAI = ZoneInfo("Asia/Shanghai")
_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class WvpRegistrar:
    """The registrar side of WVP (see the module docstring). check_refreshes: verify the digest
    of refreshes too (stricter than WVP: proves nc never holds a hex letter)."""

    def __init__(self, *, check_refreshes: bool = False, date: str = "2026-11-22T04:26:29.000") -> None:
        self.check_refreshes = check_refreshes
        self.date = date
        self.registered_call_id: str | None = None
        self.up = True
        self.refused = 0
        self.challenges = 0
        self.nonce_counts: list[str] = []
        self.challenged_calls: set[str] = set()
        self.unchallenged_credentials = 0
        """REGISTERs with credentials on a Call-ID this registrar never challenged: a cached nonce."""

    def restart(self) -> None:
        """The platform comes back from a restart: it forgot the registration and its nonces."""
        self.registered_call_id = None
        self.challenged_calls.clear()
        self.up = True

    def handle(self, request: SipRequest) -> SipResponse:
        if request.call_id == self.registered_call_id and not self.check_refreshes:
            return self._ok(request)  # [注册续订]: no credentials checked
        header = request.get("Authorization")
        if header is not None and request.call_id not in self.challenged_calls:
            self.unchallenged_credentials += 1
        if header is None:
            self.challenges += 1
            self.challenged_calls.add(request.call_id)
            response = response_to(request, 401, "Unauthorized", "wvp")
            nonce = md5(f"{secrets.randbits(64)}")
            response.add("WWW-Authenticate", f'Digest realm="{REALM}", qop="auth", nonce="{nonce}", algorithm=MD5')
            return response
        if not self.digest_ok(request, header):
            self.refused += 1
            return response_to(request, 403, "wrong password", "wvp")
        self.registered_call_id = request.call_id
        return self._ok(request)

    def digest_ok(self, request: SipRequest, header: str) -> bool:
        """DigestServerAuthenticationHelper.doAuthenticatePlainTextPassword."""
        params = {m.group(1): m.group(2) if m.group(2) is not None else m.group(3) for m in _PARAM.finditer(header)}
        self.nonce_counts.append(params.get("nc", ""))
        nc = f"{int(params['nc'], 16):08x}".upper() if "nc" in params else None
        ha1 = md5(f"{params['username']}:{params['realm']}:{PASSWORD}")
        ha2 = md5(f"{request.method.upper()}:{params['uri']}")
        kd = f"{ha1}:{params['nonce']}"
        if params.get("qop", "").lower() == "auth":
            kd += f":{nc}:{params['cnonce']}:{params['qop']}" if nc else f":{params['cnonce']}:{params['qop']}"
        return md5(f"{kd}:{ha2}") == params["response"]

    def _ok(self, request: SipRequest) -> SipResponse:
        response = response_to(request, 200, "OK", "wvp")
        response.add("Date", self.date)
        response.add("Contact", request.get("Contact") or "")
        response.add("Expires", request.get("Expires") or "3600")
        return response


def drive(harness: Harness, registrar: WvpRegistrar, messages: list) -> None:
    """Deliver what the device sent to the platform and the platform's answers back, until quiet."""
    pending = list(messages)
    while pending:
        message = pending.pop(0)
        if not isinstance(message, SipRequest) or not registrar.up:
            continue  # a platform that is down answers nothing
        if message.method == "REGISTER":
            answer = registrar.handle(message)
        elif registrar.registered_call_id is not None:
            answer = response_to(message, 200, "OK", "wvp")
        else:
            continue  # a forgotten device's keepalive: no answer
        pending += harness.run(harness.device.receive(parse_message(answer.to_bytes()), harness.now))


def advance(harness: Harness, registrar: WvpRegistrar, until: Callable[[], bool], steps: int = 2000) -> None:
    """Let fake time run from wakeup to wakeup until `until()` holds."""
    for _ in range(steps):
        if until():
            return
        wakeup = harness.device.next_wakeup()
        assert wakeup is not None
        drive(harness, registrar, harness.at(max(wakeup, harness.now)))
    raise AssertionError(f"not reached within {steps} steps; device: {harness.device.health()}")


def outage(harness: Harness, registrar: WvpRegistrar) -> None:
    """The platform goes down until the device notices (keepalives unanswered), then restarts."""
    registrar.up = False
    advance(harness, registrar, lambda: harness.device.state != "registered")
    registrar.restart()


def new_harness(**options: object) -> Harness:
    return Harness(keepalive_s=900, device_options={"wall_clock": lambda: datetime(2026, 11, 22, 4, 26, 29,
                                                                                    tzinfo=SHANGHAI), **options})


def test_the_registrar_is_faithful_a_cached_nonce_with_nc_0000000a_is_refused_403():
    registrar = WvpRegistrar()
    request = SipRequest(method="REGISTER", uri=f"sip:34020000002000000001@{REALM}")
    for name, value in (("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("From", f"<sip:{DEVICE}@{REALM}>;tag=a"),
                        ("To", f"<sip:{DEVICE}@{REALM}>"), ("Call-ID", "new"), ("CSeq", "1 REGISTER"),
                        ("Expires", "3600")):
        request.add(name, value)
    ha1, ha2 = md5(f"{DEVICE}:{REALM}:{PASSWORD}"), md5(f"REGISTER:sip:34020000002000000001@{REALM}")
    for nc, status in (("00000009", 200), ("0000000a", 403)):  # what the old policy sent after ~10 refreshes
        answer = md5(f"{ha1}:n1:{nc}:c1:auth:{ha2}")
        request.headers = [h for h in request.headers if h[0] != "Authorization"]
        request.add("Authorization", f'Digest username="{DEVICE}", realm="{REALM}", nonce="n1", '
                                     f'uri="sip:34020000002000000001@{REALM}", response="{answer}", '
                                     f"algorithm=MD5, cnonce=\"c1\", qop=auth, nc={nc}")
        registrar.registered_call_id = None
        assert registrar.handle(request).status == status


def test_registration_survives_100_refresh_cycles_and_a_platform_restart():
    harness = new_harness()
    registrar = WvpRegistrar(check_refreshes=True)  # every refresh's digest is checked, nc upper-cased
    drive(harness, registrar, [harness.start()])
    assert harness.device.state == "registered"
    advance(harness, registrar, lambda: harness.device.counters.refreshes >= 100)
    counters = harness.device.counters
    assert counters.registrations == 1 and counters.registration_failures == 0 and registrar.refused == 0
    assert set(registrar.nonce_counts) <= {f"0000000{n}" for n in range(1, 10)}  # never a hex letter
    assert registrar.challenges > 10  # a fresh challenge at least every 9 uses of a nonce

    first_call = registrar.registered_call_id
    outage(harness, registrar)
    advance(harness, registrar, lambda: harness.device.counters.registrations >= 2)
    assert harness.device.state == "registered" and registrar.refused == 0
    assert registrar.registered_call_id not in (None, first_call) and registrar.unchallenged_credentials == 0


def test_after_any_failure_a_new_call_id_starts_from_a_fresh_challenge():
    harness = new_harness()
    registrar = WvpRegistrar()  # as WVP: refreshes unchecked
    drive(harness, registrar, [harness.start()])
    advance(harness, registrar, lambda: harness.device.counters.refreshes >= 12)  # the old nc would be 0000000d
    first_call = registrar.registered_call_id
    outage(harness, registrar)
    advance(harness, registrar, lambda: harness.device.counters.registrations >= 2)
    assert registrar.registered_call_id != first_call and registrar.refused == 0
    assert harness.device.counters.registration_failures >= 1
    assert registrar.unchallenged_credentials == 0  # the new Call-ID started without a cached nonce


def test_a_403_to_a_reused_nonce_is_retried_once_from_a_fresh_challenge():
    harness = Harness()
    second = harness.register()  # nonce n1, nc 1; granted 120 s
    harness.answer(harness.keepalive, 200)
    [keepalive] = harness.at(60.0)
    harness.answer(keepalive, 200)
    [refresh] = harness.at(90.0)
    assert refresh.call_id == second.call_id and "nc=00000002" in refresh.get("Authorization")
    [fresh] = harness.answer(refresh, 403, "wrong password")
    assert fresh.call_id == second.call_id and fresh.get("Authorization") is None
    [answer] = harness.answer(fresh, 401, "Unauthorized",
                              ("WWW-Authenticate", 'Digest realm="3402000000", nonce="n2", qop="auth"'))
    assert 'nonce="n2"' in answer.get("Authorization") and "nc=00000001" in answer.get("Authorization")
    harness.answer(answer, 200, "OK", ("Expires", "120"))
    assert harness.device.state == "registered" and harness.device.counters.registration_failures == 0


def test_a_403_to_an_answer_to_a_fresh_nonce_is_a_refused_password():
    harness = Harness()
    first = harness.start()
    [answer] = harness.answer(first, 401, "Unauthorized", ("WWW-Authenticate", 'Digest realm="r", nonce="n1"'))
    assert harness.answer(answer, 403, "wrong password") == []
    assert harness.device.state == "waiting"
    assert "403 wrong password" in harness.device.last_error and "the password" in harness.device.last_error


def test_refreshes_use_a_nonce_at_most_nine_times_then_ask_for_a_fresh_one():
    harness = Harness()
    harness.register()  # granted 120 s: refresh every 90 s
    counts = []
    for cycle in range(1, 12):
        [refresh] = [m for m in harness.at(cycle * 90.0) if m.method == "REGISTER"]
        header = refresh.get("Authorization")
        if header is None:
            [refresh] = harness.answer(refresh, 401, "", ("WWW-Authenticate", f'Digest realm="r", nonce="m{cycle}", '
                                                                            'qop="auth"'))
            header = refresh.get("Authorization")
        counts.append(re.search(r"nc=(\w+)", header).group(1))
        harness.answer(refresh, 200, "OK", ("Expires", "120"))
    assert counts[:8] == [f"0000000{n}" for n in range(2, 10)] and counts[8] == "00000001"


def test_the_date_of_the_200_gives_the_clock_skew_reported_and_logged_when_large(caplog):
    caplog.set_level(logging.WARNING, logger="gateway.outputs.gb28181")
    harness = new_harness()
    registrar = WvpRegistrar(date="2026-11-22T04:27:29.500")  # WVP's GbSipDate: local time, no zone
    drive(harness, registrar, [harness.start()])
    assert harness.device.health()["clock_skew_s"] == 60.5
    assert any("clock is +60 s from the gateway's" in r.getMessage() for r in caplog.records)
    harness = new_harness()
    drive(harness, WvpRegistrar(date="Sat, 21 Nov 2026 20:26:31 GMT"), [harness.start()])  # RFC 1123
    assert harness.device.health()["clock_skew_s"] == 2.0
    harness = new_harness()
    drive(harness, WvpRegistrar(date="not a date"), [harness.start()])
    assert harness.device.state == "registered" and harness.device.health()["clock_skew_s"] is None
