"""DPoP (RFC 9449): the key an access token is bound to, the proofs that show one holds it,
and the check of a proof that comes with a bound token.

As a client (:class:`DpopKey`), the server holds one P-256 key per process (made at start-up,
never written anywhere): the provider binds the access tokens it issues to this key's
thumbprint (``cnf.jkt``), so a token that leaks from a log or a proxy is useless without a
fresh proof signed by the key. A restart makes a new key; the tokens of logins in flight are
simply not usable any more.

As a resource server (:class:`ProofVerifier`), the API checks the proof a program sends with
its bound token (RFC 9449 §4.3, §7.1): one proof, ``typ`` ``dpop+jwt``, an asymmetric
algorithm, a public key that verifies the signature and whose thumbprint is the token's
``cnf.jkt``, ``htm`` and ``htu`` of this very request (compared as RFC 9449 §4.3 and RFC 3986 §6.2.2-6.2.3
say: without query and fragment, scheme and host in any case, a default port written or not,
percent-encodings and dot segments normalized), ``ath`` of this token, ``iat`` within the
window and a ``jti`` not seen in it. The ``jti`` memory is bounded: an entry is forgotten once
its proof would be refused as stale anyway, and past :data:`MAX_REMEMBERED_PROOFS` in the
window a proof is refused (``503 dpop_busy``) rather than remembered.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry

from ..errors import WoundcareError

PROOF_TYPE: Final = "dpop+jwt"
ALGORITHM: Final = "ES256"
"""What our own proofs are signed with."""
ACCEPTED_ALGORITHMS: Final = ("ES256", "ES384", "PS256", "PS384", "RS256")
"""What a program's proofs may be signed with: asymmetric only."""
PROOF_WINDOW_SECONDS: Final = 60
MAX_PROOF_BYTES: Final = 8192
MAX_REMEMBERED_PROOFS: Final = 50_000
"""Proofs remembered at once (about 400 a second for the two minutes one is kept: a proof's
``iat`` may lie a window ahead): a few MB at most, whatever arrives."""
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_PERCENT: Final = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def target_uri(url: str) -> str:
    """``htu``: the request's URI without query and fragment (RFC 9449 §4.2)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def comparable_uri(url: str) -> str | None:
    """``url`` as an ``htu`` is compared (RFC 9449 §4.3): without query and fragment, scheme
    and host in lower case, the scheme's default port left out, percent-encodings of unreserved
    characters decoded and the others in upper case, dot segments removed, an empty path
    ``/`` (RFC 3986 §6.2.2, §6.2.3). None for what is no absolute http(s) URL."""
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:  # a port out of range or not a number, a malformed IPv6 literal
        return None
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    path = _without_dot_segments(_PERCENT.sub(_normal_percent, parts.path)) or "/"
    return urlunsplit((scheme, netloc, path, "", ""))


def _normal_percent(match: re.Match[str]) -> str:
    char = chr(int(match.group()[1:], 16))
    return char if char in _UNRESERVED else match.group().upper()


def _without_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4's remove_dot_segments."""
    output: list[str] = []
    rest = path
    while rest:
        if rest.startswith(("../", "./")):
            rest = rest[rest.index("/") + 1 :]
        elif rest.startswith("/./") or rest == "/.":
            rest = "/" + rest[3:]
        elif rest.startswith("/../") or rest == "/..":
            rest = "/" + rest[4:]
            if output:
                output.pop()
        elif rest in (".", ".."):
            rest = ""
        else:
            end = rest.find("/", 1)
            end = len(rest) if end < 0 else end
            output.append(rest[:end])
            rest = rest[end:]
    return "".join(output)


def token_hash(access_token: str) -> str:
    """``ath``: base64url of the SHA-256 of the access token's ASCII, unpadded (RFC 9449 §4.2)."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class DpopKey:
    key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", private=True), repr=False)

    @property
    def thumbprint(self) -> str:
        """The JWK SHA-256 thumbprint (RFC 7638) the provider puts in ``cnf.jkt``."""
        return self.key.thumbprint()

    def proof(
        self, method: str, url: str, *, nonce: str | None = None, access_token: str | None = None,
        now: float | None = None,
    ) -> str:
        """A one-use proof for one request: ``method`` on ``url``, with the server's ``nonce``
        when it asked for one, and ``ath`` when an access token goes with the request."""
        claims: dict[str, object] = {
            "jti": secrets.token_urlsafe(24),
            "htm": method.upper(),
            "htu": target_uri(url),
            "iat": int(time.time() if now is None else now),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if access_token is not None:
            claims["ath"] = token_hash(access_token)
        header = {"typ": PROOF_TYPE, "alg": ALGORITHM, "jwk": self.key.as_dict(private=False)}
        return jwt.encode(header, claims, self.key, algorithms=[ALGORITHM])


class ProofError(WoundcareError):
    """A proof is missing or wrong; ``reason`` is a fixed code for the audit log."""

    code = "dpop_invalid"
    status = 401
    message = "a valid DPoP proof must come with this token"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProofsOverflow(ProofError):
    """More proofs in the window than are remembered: refused, so the memory does not grow.
    Not the proof's fault, so no refusal of the token; the program tries again shortly."""

    code = "dpop_busy"
    status = 503
    message = "too many DPoP proofs arrive at once; try again shortly"

    def __init__(self) -> None:
        super().__init__("dpop_replay_cache_full")

    @property
    def headers(self) -> Mapping[str, str]:
        return {"Retry-After": "1"}


@dataclass(slots=True)
class ProofVerifier:
    """Checks the proof that comes with a DPoP-bound access token. Each proof is good once:
    its ``jti`` is remembered for as long as its ``iat`` is in the window (in this process;
    behind a load balancer, the short window is what limits a replay to another instance),
    at most ``capacity`` at once."""

    window_seconds: float = PROOF_WINDOW_SECONDS
    capacity: int = MAX_REMEMBERED_PROOFS
    _seen: set[str] = field(default_factory=set)
    _expiries: list[tuple[float, str]] = field(default_factory=list)
    """A heap of (when a remembered proof turns stale, its entry in ``_seen``)."""

    def verify(
        self, proofs: Sequence[str], *, method: str, url: str, access_token: str, jkt: str, now: float | None = None
    ) -> None:
        current = time.time() if now is None else now
        if len(proofs) != 1 or not 0 < len(proofs[0]) <= MAX_PROOF_BYTES:
            raise ProofError("dpop_proof_missing")
        proof = proofs[0]
        try:
            header = jws.extract_compact(proof.encode()).protected
            alg, public = header.get("alg"), header.get("jwk")
            if header.get("typ") != PROOF_TYPE or alg not in ACCEPTED_ALGORITHMS or not isinstance(public, dict):
                raise ProofError("dpop_proof_invalid")
            key = JWKRegistry.import_key(public)
            if key.is_private:
                raise ProofError("dpop_proof_invalid")
            claims = jwt.decode(proof, key, algorithms=[alg]).claims
        except (JoseError, ValueError, TypeError, KeyError):
            raise ProofError("dpop_proof_invalid") from None
        if not hmac.compare_digest(key.thumbprint().encode(), jkt.encode()):
            raise ProofError("dpop_wrong_key")
        htu = claims.get("htu")
        if claims.get("htm") != method.upper() or not isinstance(htu, str) or not _same_target(htu, url):
            raise ProofError("dpop_wrong_request")
        ath = claims.get("ath")
        if not isinstance(ath, str) or not hmac.compare_digest(ath.encode(), token_hash(access_token).encode()):
            raise ProofError("dpop_wrong_token")
        iat, jti = claims.get("iat"), claims.get("jti")
        if not isinstance(iat, int | float) or isinstance(iat, bool) or abs(iat - current) > self.window_seconds:
            raise ProofError("dpop_proof_stale")
        if not isinstance(jti, str) or not 0 < len(jti) <= 256:
            raise ProofError("dpop_proof_invalid")
        self._forget_stale(current)
        seen = f"{jkt}:{jti}"
        if seen in self._seen:
            raise ProofError("dpop_proof_replayed")
        if len(self._seen) >= self.capacity:
            raise ProofsOverflow()
        self._seen.add(seen)
        heapq.heappush(self._expiries, (float(iat) + self.window_seconds, seen))

    def _forget_stale(self, now: float) -> None:
        # A proof past its window is refused as stale anyway: its jti need not be kept.
        while self._expiries and self._expiries[0][0] < now:
            self._seen.discard(heapq.heappop(self._expiries)[1])


def _same_target(htu: str, url: str) -> bool:
    ours = comparable_uri(url)
    return ours is not None and comparable_uri(htu) == ours
