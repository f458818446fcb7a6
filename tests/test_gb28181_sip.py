"""SIP message parsing, building and TCP framing, and digest authentication: pure, no sockets.

Malformed input must raise SipParseError (one-line reason), never anything else: the transport
logs that line and drops the message.
"""

from __future__ import annotations

import random

import pytest

from gateway.outputs.gb28181.digest import Challenge, DigestError, authorization, parse_challenge
from gateway.outputs.gb28181.sip import (
    SipParseError,
    SipRequest,
    SipResponse,
    StreamFramer,
    header_params,
    parse_message,
    response_to,
    uri_of,
    uri_user,
)

QUERY = (
    b"MESSAGE sip:34020000001180000001@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bK-1\r\n"
    b"v: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-2\r\n"
    b"From: <sip:34020000002000000001@3402000000>;tag=abc\r\n"
    b"t: <sip:34020000001180000001@3402000000>\r\n"
    b"i: 42@10.0.0.1\r\n"
    b"CSeq: 20 MESSAGE\r\n"
    b"Subject: a long\r\n"
    b" folded value\r\n"
    b"Content-Type: Application/MANSCDP+xml\r\n"
    b"l: 5\r\n"
    b"\r\n"
    b"<a/>\nEXTRA"
)


def test_parse_request_with_compact_and_folded_headers():
    message = parse_message(QUERY)
    assert isinstance(message, SipRequest)
    assert message.method == "MESSAGE" and message.uri.startswith("sip:3402")
    assert message.get_all("via") == ["SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bK-1",
                                      "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-2"]
    assert message.branch == "z9hG4bK-1"
    assert message.call_id == "42@10.0.0.1" and message.cseq == (20, "MESSAGE")
    assert message.get("Subject") == "a long folded value"
    assert message.body == b"<a/>\n"  # cut to Content-Length (UDP: the rest is discarded)


def test_response_to_copies_the_transaction_headers_and_tags_to():
    request = parse_message(QUERY)
    response = response_to(request, 200, "OK", "t1")
    again = parse_message(response.to_bytes())
    assert isinstance(again, SipResponse) and again.status == 200 and again.reason == "OK"
    assert again.get_all("Via") == request.get_all("Via")
    assert again.get("To") == "<sip:34020000001180000001@3402000000>;tag=t1"
    assert again.get("From") == request.get("From") and again.call_id == request.call_id
    assert again.get("Content-Length") == "0" and again.body == b""


def test_build_round_trip_writes_content_length_from_the_body():
    request = SipRequest(method="MESSAGE", uri="sip:a@b")
    for name, value in [("Via", "SIP/2.0/TCP h:1;branch=z9hG4bKx"), ("From", "<sip:x@d>;tag=1"),
                        ("To", "<sip:a@b>"), ("Call-ID", "c"), ("CSeq", "1 MESSAGE")]:
        request.add(name, value)
    request.add("Content-Length", "999")  # ignored: the body decides
    request.body = "人员聚集".encode("gb2312")
    data = request.to_bytes()
    assert b"Content-Length: 8\r\n\r\n" in data and data.count(b"Content-Length") == 1
    assert parse_message(data).body == request.body


def test_header_injection_is_refused_when_building():
    request = SipRequest(method="MESSAGE", uri="sip:a@b")
    with pytest.raises(ValueError):
        request.add("Subject", "x\r\nVia: evil")
    with pytest.raises(ValueError):
        request.add("Bad Name", "x")


@pytest.mark.parametrize("data, reason", [
    (b"", "no blank line"),
    (b"hello world\r\n\r\n", "bad request line"),
    (b"MESSAGE sip:a@b HTTP/1.1\r\n\r\n", "bad request line"),
    (b"SIP/2.0 2000 OK\r\n\r\n", "bad status line"),
    (b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", "missing From"),
    (b"SIP/2.0 200 OK\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: one OPTIONS\r\n\r\n", "bad CSeq"),
    (b"SIP/2.0 200 OK\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 10\r\n\r\nabc",
     "truncated"),
    (b"SIP/2.0 200 OK\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 X\r\nContent-Length: -1\r\n\r\n",
     "bad Content-Length"),
    (b"SIP/2.0 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
    (b"SIP/2.0 200 OK\r\n folded first\r\n\r\n", "continuation line"),
    (b"X" * 70_000, "larger than"),
])
def test_malformed_messages_raise_a_one_line_reason(data: bytes, reason: str):
    with pytest.raises(SipParseError) as caught:
        parse_message(data)
    assert reason in str(caught.value) and "\n" not in str(caught.value)


def test_random_garbage_never_raises_anything_but_sip_parse_error():
    rng = random.Random(28181)
    for _ in range(3000):
        cut = rng.randrange(len(QUERY))
        mutated = bytearray(QUERY[:cut] + bytes(rng.randrange(256) for _ in range(rng.randrange(8))) + QUERY[cut:])
        for _ in range(rng.randrange(4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            parse_message(bytes(mutated))
        except SipParseError:
            pass


def test_stream_framer_cuts_by_content_length_across_reads():
    response = (b"SIP/2.0 200 OK\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n"
                b"Content-Length: 0\r\n\r\n")
    stream = b"\r\n\r\n" + QUERY[:-5] + response + response  # keep-alive CRLFs, then two messages
    framer = StreamFramer()
    received = []
    for index in range(0, len(stream), 7):
        received += framer.feed(stream[index:index + 7])
    assert [parse_message(raw).call_id for raw in received] == ["42@10.0.0.1", "c", "c"]
    assert parse_message(received[0]).body == b"<a/>\n"


def test_stream_framer_refuses_what_cannot_be_framed():
    with pytest.raises(SipParseError, match="needs a Content-Length"):
        StreamFramer().feed(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n")
    with pytest.raises(SipParseError, match="no end of headers"):
        StreamFramer().feed(b"A" * 70_000)
    with pytest.raises(SipParseError, match="bad Content-Length"):
        StreamFramer().feed(b"SIP/2.0 200 OK\r\nl: lots\r\n\r\n")


def test_header_value_helpers():
    value = '"平台 <x>;y" <sip:34020000002000000001@3402000000;transport=udp>;tag=9f;expires=60'
    assert uri_of(value) == "sip:34020000002000000001@3402000000;transport=udp"
    assert header_params(value) == {"tag": "9f", "expires": "60"}
    assert uri_user(uri_of(value)) == "34020000002000000001"
    assert uri_user("sip:3402000000") is None
    assert header_params("SIP/2.0/UDP h:5060;rport;branch=z9hG4bKx") == {"rport": "", "branch": "z9hG4bKx"}


# --------------------------------------------------------------------------- digest


def test_rfc2617_example_with_qop_auth():
    challenge = parse_challenge('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                                'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    assert challenge.chosen_qop == "auth"
    header = authorization(challenge, username="Mufasa", password="Circle Of Life", method="GET",
                           uri="/dir/index.html", nonce_count=1, cnonce="0a4f113b")
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert "qop=auth" in header and "nc=00000001" in header and 'cnonce="0a4f113b"' in header
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header


def test_rfc7616_examples_md5_and_sha256():
    for algorithm, expected in [("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
                                ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")]:
        challenge = parse_challenge(f'Digest realm="http-auth@example.org", qop="auth, auth-int", '
                                    f'algorithm={algorithm}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
                                    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"')
        header = authorization(challenge, username="Mufasa", password="Circle of Life", method="GET",
                               uri="/dir/index.html", cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
        assert f'response="{expected}"' in header and f"algorithm={algorithm}" in header


def test_without_qop_rfc2069_style():
    # RFC 2617 3.5 example response computed without qop: H(HA1:nonce:HA2)
    challenge = parse_challenge('Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"')
    header = authorization(challenge, username="Mufasa", password="Circle Of Life", method="GET", uri="/dir/index.html")
    assert 'response="670fd8c2df070c60b045671b8b24ff02"' in header
    assert "qop" not in header and "nc=" not in header


def test_challenge_parsing_edge_cases():
    assert parse_challenge('Digest realm="a\\"b", nonce=xyz, stale=TRUE').realm == 'a"b'
    assert parse_challenge('digest realm="r", nonce="n", stale=true').stale is True
    assert parse_challenge('Digest realm="r",nonce="n",algorithm=MD5-sess,qop="auth"').algorithm == "MD5-sess"
    for header, reason in [('Basic realm="r"', "not Digest"), ('Digest realm="r"', "no nonce"),
                           ('Digest nonce="n"', "no realm"), ('Digest realm="r", nonce="n", algorithm=SHA-1', "SHA-1"),
                           ('Digest realm="r", nonce="n", qop="auth-conf"', "neither auth"),
                           ('Digest realm="r", nonce="n", algorithm=MD5-sess', "needs a qop"),
                           ('Digest realm="r" nonce', "cannot read")]:
        with pytest.raises(DigestError, match=reason):
            parse_challenge(header)


def test_sess_and_auth_int_follow_rfc7616():
    md5_sess = Challenge(realm="r", nonce="n", algorithm="MD5-sess", qop=("auth",))
    plain = Challenge(realm="r", nonce="n", algorithm="MD5", qop=("auth",))
    arguments = dict(username="u", password="p", method="REGISTER", uri="sip:a@b", cnonce="c")
    assert authorization(md5_sess, **arguments) != authorization(plain, **arguments)
    auth_int = Challenge(realm="r", nonce="n", qop=("auth-int",))
    assert "qop=auth-int" in authorization(auth_int, **arguments, body=b"x")
    assert authorization(auth_int, **arguments, body=b"x") != authorization(auth_int, **arguments, body=b"y")
    with pytest.raises(DigestError, match="client nonce"):
        authorization(plain, username="u", password="p", method="REGISTER", uri="sip:a@b")
