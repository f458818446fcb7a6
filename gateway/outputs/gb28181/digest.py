"""HTTP Digest authentication for SIP REGISTER (RFC 2617, RFC 7616, RFC 3261 22.4). Pure.

GB/T 28181 platforms challenge the REGISTER with `401 Unauthorized` and a
`WWW-Authenticate: Digest realm=..., nonce=...` header, almost always MD5, with or without
`qop="auth"`; the username is the device ID. SHA-256 and the `-sess` variants of RFC 7616 and
`qop=auth-int` cost a few lines, so they are answered too; anything else is a `DigestError`
naming what the platform asked for.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

HASHES = {"MD5": "md5", "SHA-256": "sha256"}
"""Digest algorithm name (without -sess) -> hashlib name."""

_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*(?:,|$)')


class DigestError(ValueError):
    """A challenge the gateway cannot answer (not Digest, unknown algorithm, missing nonce...)."""


@dataclass(frozen=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False

    @property
    def chosen_qop(self) -> str | None:
        """'auth' when offered (no body hash needed), else 'auth-int', else None (RFC 2069 style)."""
        if "auth" in self.qop:
            return "auth"
        return "auth-int" if "auth-int" in self.qop else None


def parse_challenge(header: str) -> Challenge:
    """A `WWW-Authenticate` value -> Challenge; raises DigestError saying what is wrong."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"the platform asks for {scheme or 'no'} authentication, not Digest")
    params = _params(rest)
    algorithm = params.get("algorithm", "MD5")
    base = algorithm.upper().removesuffix("-SESS")
    if base not in HASHES:
        raise DigestError(f"digest algorithm {algorithm!r} is not supported (MD5, SHA-256 and -sess are)")
    if "nonce" not in params or "realm" not in params:
        raise DigestError("the challenge has no " + ("nonce" if "realm" in params else "realm"))
    qop = tuple(item.strip().lower() for item in params.get("qop", "").split(",") if item.strip())
    if qop and not {"auth", "auth-int"} & set(qop):
        raise DigestError(f"qop {params['qop']!r} offers neither auth nor auth-int")
    if algorithm.upper().endswith("-SESS") and not qop:
        raise DigestError(f"{algorithm} needs a qop (for the client nonce) and the challenge has none")
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=algorithm,
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
    )


def _params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = _PARAM.match(text, position)
        if not match or match.end() == position:
            raise DigestError(f"cannot read the challenge parameters near {text[position:position + 30]!r}")
        value = match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match.group(1).lower()] = value
        position = match.end()
    return params


def authorization(
    challenge: Challenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    nonce_count: int = 1,
    cnonce: str = "",
    body: bytes = b"",
) -> str:
    """The `Authorization` header value answering `challenge` (cnonce: random, from the caller)."""
    qop = challenge.chosen_qop
    if qop and not cnonce:
        raise DigestError("a qop challenge needs a client nonce")
    name = HASHES[challenge.algorithm.upper().removesuffix("-SESS")]

    def digest(text: str | bytes) -> str:
        return hashlib.new(name, text.encode("utf-8") if isinstance(text, str) else text).hexdigest()

    ha1 = digest(f"{username}:{challenge.realm}:{password}")
    if challenge.algorithm.upper().endswith("-SESS"):
        ha1 = digest(f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = digest(f"{method}:{uri}:{digest(body)}" if qop == "auth-int" else f"{method}:{uri}")
    nc = f"{nonce_count:08x}"
    if qop:
        response = digest(f"{ha1}:{challenge.nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    else:
        response = digest(f"{ha1}:{challenge.nonce}:{ha2}")
    parts = [
        f"username={_quote(username)}", f"realm={_quote(challenge.realm)}", f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}", f"response={_quote(response)}", f"algorithm={challenge.algorithm}",
    ]
    if qop:
        parts += [f"cnonce={_quote(cnonce)}", f"qop={qop}", f"nc={nc}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
