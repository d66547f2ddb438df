"""DPoP (RFC 9449): the key an access token is bound to, and the proofs that show we hold it.

The server holds one P-256 key per process (made at start-up, never written anywhere): the
provider binds the access tokens it issues to this key's thumbprint (``cnf.jkt``), so a token
that leaks from a log or a proxy is useless without a fresh proof signed by the key. A
restart makes a new key; the tokens of logins in flight are simply not usable any more.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from joserfc import jwt
from joserfc.jwk import ECKey

PROOF_TYPE: Final = "dpop+jwt"
ALGORITHM: Final = "ES256"


def target_uri(url: str) -> str:
    """``htu``: the request's URI without query and fragment (RFC 9449 §4.2)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


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
