"""OpenID Connect login (HelseID): authorization code flow with PKCE (S256), ``state`` and ``nonce``.

Nothing here knows HTTP routes or the database; ``woundcare/api/oidc.py`` does. This module:

- keeps one login attempt (state, nonce, PKCE verifier) in a sealed cookie value
  (:class:`FlowSealer`, AES-256-GCM under a key derived from the server secret);
- talks to the provider (:class:`OidcClient`): discovery and JWKS, both cached, the JWKS
  refetched when an ID token names a key id it does not hold; the token endpoint;
- what HelseID asks of its clients, each switched on per deployment: the authorization
  request pushed to the provider (PAR, RFC 9126) so the browser carries only a
  ``request_uri``; client authentication by a signed assertion (``private_key_jwt``,
  RFC 7523); access tokens bound to our DPoP key (RFC 9449, :mod:`.dpop`), answering the
  provider's ``use_dpop_nonce``; the userinfo endpoint read with such a token;
- verifies the ID token (signature, ``iss``, ``aud``, ``azp``, ``exp``, ``iat``, ``nbf``, ``nonce``)
  and reads the identity from it: the subject, HelseID's HPR number and security level.

Errors, each with a fixed ``reason`` for the audit log and never the provider's own words::

    OidcError
     ├── FlowError       the login attempt is missing, expired, tampered or not this browser's
     ├── LoginRefused    the provider said no: an ``error`` redirect, a refused code, a wrong ``iss``
     ├── ProviderError   the provider is unreachable or answers nonsense (discovery, JWKS, token)
     ├── TokenError      the ID token fails verification, or lacks the claim we map users by
     └── SecurityLevelTooLow  the login's security level is below the deployment's minimum
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote_plus, urlencode, urlsplit

import aiohttp
import orjson
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import Key, KeySet, import_key

from ..crypto.errors import SealError
from ..crypto.kdf import Purpose, derive_key
from ..crypto.sealing import seal, unseal
from ..errors import WoundcareError
from ..validation import is_loopback
from .dpop import ALGORITHM as DPOP_ALGORITHM
from .dpop import DpopKey

FLOW_TTL_SECONDS: Final = 600
"""How long a login attempt may take, from our redirect to the provider's redirect back."""
CLOCK_SKEW_SECONDS: Final = 60
DISCOVERY_TTL_SECONDS: Final = 3600
JWKS_MIN_REFRESH_SECONDS: Final = 30.0
MAX_RESPONSE_BYTES: Final = 256 * 1024
SIGNING_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
"""Asymmetric only: never ``none``, never HS* (which would make the client secret a signing key)."""
_FLOW_AAD: Final = b"woundcare/oidc-flow/v1"
HPR_CLAIM: Final = "helseid://claims/hpr/hpr_number"
SECURITY_LEVEL_CLAIM: Final = "helseid://claims/identity/security_level"
ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_HPR_NUMBER: Final = re.compile(r"[0-9]{1,9}")
"""The Health Personnel Register's numbers are up to nine digits."""


class OidcError(WoundcareError):
    """``reason`` is a fixed code for the audit log; the message is ours, never the provider's."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


class FlowError(OidcError):
    code = "oidc_state"
    status = 400
    message = "this login attempt is unknown or has expired; start again"


class LoginRefused(OidcError):
    code = "oidc_failed"
    status = 401
    message = "the login at the identity provider did not complete"


class ProviderError(OidcError):
    code = "oidc_provider_error"
    status = 502
    message = "the identity provider could not be reached or answered wrongly"


class TokenError(OidcError):
    code = "oidc_invalid_token"
    status = 401
    message = "the identity provider's answer could not be verified"


class SecurityLevelTooLow(OidcError):
    code = "oidc_security_level"
    status = 403
    message = "this login's security level is below what this service requires; log in with a stronger method"


def _check_url(name: str, url: object, *, allow_http: bool) -> str:
    if isinstance(url, str):
        parts = urlsplit(url)
        plain_ok = allow_http and parts.scheme == "http" and is_loopback(url)
        if (parts.scheme == "https" or plain_ok) and parts.hostname and not parts.fragment:
            return url
    raise ValueError(f"'{name}' must be an https URL (http only on loopback, for tests)")


@dataclass(frozen=True, slots=True)
class OidcConfig:
    issuer: str
    """Exactly as the provider writes it in ``iss`` (HelseID: ``https://helseid-sts.nhn.no``)."""
    client_id: str
    redirect_uri: str
    """``<public url>/api/oidc/callback``, registered at the provider."""
    client_secret: str | None = field(default=None, repr=False)
    """For ``client_secret_basic``; unused when ``client_key`` is set."""
    client_key: Key | None = field(default=None, repr=False)
    """Private JWK for ``private_key_jwt`` (what HelseID requires); wins over the secret."""
    subject_claim: str = "sub"
    """The ID-token claim matched against ``users.oidc_subject``."""
    scopes: tuple[str, ...] = ("openid",)
    timeout_seconds: float = 10.0
    par: bool = False
    """Push the authorization request (RFC 9126); the browser is sent with ``request_uri`` only."""
    dpop: bool = False
    """Ask for DPoP-bound access tokens (RFC 9449); a plain ``Bearer`` token is refused."""
    userinfo: bool = False
    """Read the claims from the userinfo endpoint as well (the ID token's win where both have one)."""
    hpr_claim: str = HPR_CLAIM
    """The claim holding the HPR number (Helsepersonellregisteret), stored on the user."""
    security_level_claim: str = SECURITY_LEVEL_CLAIM
    min_security_level: int | None = None
    """Logins below this level are refused (HelseID: 4 is "high", e.g. BankID); None: no minimum."""

    def __post_init__(self) -> None:
        _check_url("issuer", self.issuer, allow_http=True)
        _check_url("redirect_uri", self.redirect_uri, allow_http=True)
        if not self.client_id:
            raise ValueError("'client_id' is required")
        if self.client_key is None and not self.client_secret:
            raise ValueError("OIDC needs a client secret or a client key")
        if self.client_key is not None and not self.client_key.is_private:
            raise ValueError("'client_key' must be a private key")
        if "openid" not in self.scopes:
            raise ValueError(f"'scopes' must include 'openid' (got {list(self.scopes)!r})")
        if not self.subject_claim or not self.hpr_claim or not self.security_level_claim:
            raise ValueError("claim names must not be empty")


def load_client_key(data: bytes) -> Key:
    """A private key from a JWK (JSON) or PEM file's bytes."""
    text = data.strip()
    if text.startswith(b"{"):
        return import_key(orjson.loads(text))
    for key_type in ("RSA", "EC"):
        try:
            return import_key(text, key_type)
        except (ValueError, JoseError):
            continue
    raise ValueError("client key must be a private JWK or a PEM RSA/EC key")


# -- one login attempt ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flow:
    """One login attempt; lives only in the browser's sealed, HttpOnly, short-lived cookie."""

    state: str
    nonce: str
    verifier: str
    """PKCE ``code_verifier`` (43 chars of base64url, 256 bits)."""
    issued_at: int

    @classmethod
    def new(cls, now: float | None = None) -> Flow:
        return cls(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            verifier=secrets.token_urlsafe(32),
            issued_at=int(now if now is not None else time.time()),
        )

    @property
    def challenge(self) -> str:
        """PKCE S256: ``base64url(sha256(verifier))`` without padding (RFC 7636 §4.2)."""
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class FlowSealer:
    """Seals a :class:`Flow` into a cookie value and opens it again, once, within its lifetime.

    AES-256-GCM, so the browser can neither read the verifier and nonce nor change them. The
    key is derived from the server secret for this purpose only.
    """

    def __init__(self, secret: bytes, ttl_seconds: int = FLOW_TTL_SECONDS) -> None:
        self._key = derive_key(secret, Purpose.OIDC_FLOW)
        self._ttl = ttl_seconds

    def seal(self, flow: Flow) -> str:
        payload = orjson.dumps({"s": flow.state, "n": flow.nonce, "v": flow.verifier, "t": flow.issued_at})
        return base64.urlsafe_b64encode(seal(self._key, payload, _FLOW_AAD)).rstrip(b"=").decode()

    def open(self, value: str | None, state: str | None, now: float | None = None) -> Flow:
        """The flow in ``value`` if it is intact, current and was started for ``state``."""
        if not value:
            raise FlowError("flow_missing")
        if not state:
            raise FlowError("state_missing")
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            data = orjson.loads(unseal(self._key, raw, _FLOW_AAD))
            flow = Flow(str(data["s"]), str(data["n"]), str(data["v"]), int(data["t"]))
        except (ValueError, TypeError, KeyError, SealError, orjson.JSONDecodeError):
            raise FlowError("flow_invalid") from None
        current = time.time() if now is None else now
        if not flow.issued_at - CLOCK_SKEW_SECONDS <= current <= flow.issued_at + self._ttl:
            raise FlowError("flow_expired")
        if not hmac.compare_digest(flow.state.encode(), state.encode()):
            raise FlowError("state_mismatch")
        return flow


# -- the provider -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The parts of the discovery document we use, checked."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    signing_algorithms: frozenset[str]
    iss_parameter: bool
    """RFC 9207: the provider names itself in the authorization response (mix-up defence)."""
    par_endpoint: str | None = None
    """``pushed_authorization_request_endpoint`` (RFC 9126)."""
    userinfo_endpoint: str | None = None
    dpop_algorithms: frozenset[str] | None = None
    """``dpop_signing_alg_values_supported``; None when the provider does not say."""

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], issuer: str) -> ProviderMetadata:
        if doc.get("issuer") != issuer:
            # OIDC Discovery §4.3: the document must be the issuer's own.
            raise ProviderError("discovery_issuer_mismatch")
        allow_http = is_loopback(issuer)
        try:
            endpoints = {
                name: _check_url(name, doc.get(name), allow_http=allow_http)
                for name in ("authorization_endpoint", "token_endpoint", "jwks_uri")
            }
            optional = {
                field: _check_url(name, doc[name], allow_http=allow_http) if doc.get(name) is not None else None
                for field, name in (
                    ("par_endpoint", "pushed_authorization_request_endpoint"),
                    ("userinfo_endpoint", "userinfo_endpoint"),
                )
            }
        except ValueError:
            raise ProviderError("discovery_invalid") from None
        dpop = doc.get("dpop_signing_alg_values_supported")
        methods = doc.get("code_challenge_methods_supported")
        if methods is not None and (not isinstance(methods, list) or "S256" not in methods):
            raise ProviderError("discovery_no_pkce")
        offered = doc.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = SIGNING_ALGORITHMS & {a for a in offered if isinstance(a, str)}
        if not algorithms:
            raise ProviderError("discovery_no_algorithm")
        return cls(
            issuer=issuer,
            signing_algorithms=frozenset(algorithms),
            iss_parameter=doc.get("authorization_response_iss_parameter_supported") is True,
            dpop_algorithms=frozenset(a for a in dpop if isinstance(a, str)) if isinstance(dpop, list) else None,
            par_endpoint=optional["par_endpoint"],
            userinfo_endpoint=optional["userinfo_endpoint"],
            **endpoints,
        )


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified login: the claim value we map users by. Personal data: never log it."""

    subject: str = field(repr=False)
    hpr_number: str | None = None
    """The health professional's HPR number, when the provider sent one (a public registry number)."""


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A verified access token a program presents to our API."""

    jkt: str
    """The thumbprint of the DPoP key it is bound to (``cnf.jkt``)."""
    hpr_number: str | None = field(default=None, repr=False)
    """The professional the program acts for."""


@dataclass(frozen=True, slots=True)
class Tokens:
    """The token endpoint's answer, the parts we use."""

    id_token: str = field(repr=False)
    access_token: str = field(repr=False)
    token_type: str


class OidcClient:
    """One relying party at one provider. Start it with :meth:`start` (in ``cleanup_ctx``)."""

    def __init__(
        self,
        config: OidcConfig,
        *,
        now: Callable[[], float] = time.time,
        jwks_min_refresh_seconds: float = JWKS_MIN_REFRESH_SECONDS,
    ) -> None:
        self.config = config
        self.jwks_min_refresh_seconds = jwks_min_refresh_seconds
        """An ID token naming an unknown key id refetches the JWKS at most this often."""
        self._now = now
        self._http: aiohttp.ClientSession | None = None
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = float("-inf")
        self._lock = asyncio.Lock()
        self.dpop = DpopKey() if config.dpop else None
        """One key per process: the provider binds our access tokens to its thumbprint."""
        self.dpop_nonce: str | None = None
        """The provider's latest ``DPoP-Nonce``, put in the next proof."""

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
            headers={"Accept": "application/json"},
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._http = None

    # -- the two legs of the flow

    async def authorization_url(self, flow: Flow) -> str:
        """Where to send the browser. With PAR the request itself goes to the provider
        first, authenticated as we are at the token endpoint, so the browser (and its
        history, proxies and extensions) carries only an opaque, short-lived reference."""
        metadata = await self.metadata()
        if self.dpop is not None and metadata.dpop_algorithms is not None and DPOP_ALGORITHM not in metadata.dpop_algorithms:
            raise ProviderError("discovery_no_dpop")
        request = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": self.config.redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": flow.state,
            "nonce": flow.nonce,
            "code_challenge": flow.challenge,
            "code_challenge_method": "S256",
        }
        if self.config.par:
            if metadata.par_endpoint is None:
                raise ProviderError("discovery_no_par")
            status, answer = await self._post(metadata, metadata.par_endpoint, "par", request)
            if status in (400, 401):
                raise LoginRefused("par_refused")
            request_uri = answer.get("request_uri")
            if status != 201 or not isinstance(request_uri, str) or not 0 < len(request_uri) <= 2048:
                raise ProviderError("par_invalid")
            request = {"client_id": self.config.client_id, "request_uri": request_uri}
        separator = "&" if urlsplit(metadata.authorization_endpoint).query else "?"
        return f"{metadata.authorization_endpoint}{separator}{urlencode(request)}"

    async def finish(self, flow: Flow, params: Mapping[str, str]) -> Identity:
        """The identity behind the provider's redirect back, ``params`` being its query."""
        metadata = await self.metadata()
        issuer = params.get("iss")
        if (issuer is not None and issuer != metadata.issuer) or (issuer is None and metadata.iss_parameter):
            raise LoginRefused("issuer_mismatch")
        if "error" in params:
            raise LoginRefused("provider_refused")
        code = params.get("code")
        if not code or len(code) > 2048:
            raise LoginRefused("code_missing")
        tokens = await self._redeem(metadata, flow, code)
        claims = await self.verify_id_token(tokens.id_token, flow.nonce)
        if self.config.userinfo:
            info = await self._userinfo(metadata, tokens)
            if info.get("sub") != claims["sub"]:
                # OIDC Core §5.3.2: the answer must be about the user the ID token names.
                raise TokenError("userinfo_subject_mismatch")
            claims = info | claims
        return self._identity(claims)

    def _identity(self, claims: Mapping[str, Any]) -> Identity:
        subject = claims.get(self.config.subject_claim)
        if not isinstance(subject, str) or not 0 < len(subject) <= 200:
            raise TokenError("subject_claim_missing")
        hpr_number = claims.get(self.config.hpr_claim)
        if hpr_number is not None and not is_hpr_number(hpr_number):
            raise TokenError("hpr_number_invalid")
        self._check_security_level(claims)
        return Identity(subject, hpr_number)

    def _check_security_level(self, claims: Mapping[str, Any]) -> None:
        """The deployment's minimum security level, for a person's login and for a program's
        token alike: a token from a weaker login must not reach the API either."""
        level = _security_level(claims.get(self.config.security_level_claim))
        minimum = self.config.min_security_level
        if minimum is not None and (level is None or level < minimum):
            raise SecurityLevelTooLow("security_level_too_low" if level is not None else "security_level_missing")

    async def _redeem(self, metadata: ProviderMetadata, flow: Flow, code: str) -> Tokens:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.config.redirect_uri,
            "code_verifier": flow.verifier,
        }
        status, answer = await self._post(metadata, metadata.token_endpoint, "token", form)
        if status in (400, 401):
            # RFC 6749 §5.2: the code, verifier, redirect URI or our credentials were refused.
            raise LoginRefused("token_refused")
        if status != 200:
            raise ProviderError("token_status")
        id_token, access_token, token_type = (answer.get(k) for k in ("id_token", "access_token", "token_type"))
        if not isinstance(id_token, str) or not id_token:
            raise ProviderError("token_no_id_token")
        if not isinstance(access_token, str) or not access_token or not isinstance(token_type, str):
            raise ProviderError("token_invalid")
        if self.dpop is not None and token_type.lower() != "dpop":
            # RFC 9449 §5: a provider that quietly issues a bearer token is not what we asked for.
            raise TokenError("token_not_bound")
        return Tokens(id_token, access_token, token_type)

    async def _post(
        self, metadata: ProviderMetadata, url: str, what: str, form: Mapping[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """POST ``form`` with our client authentication and, with DPoP, a proof; once more
        with the nonce the provider asks for (RFC 9449 §8)."""
        status, nonce, answer = await self._post_once(metadata, url, what, form)
        if status == 400 and answer.get("error") == "use_dpop_nonce" and nonce and self.dpop is not None:
            status, _, answer = await self._post_once(metadata, url, what, form)
        return status, answer

    async def _post_once(
        self, metadata: ProviderMetadata, url: str, what: str, form: Mapping[str, str]
    ) -> tuple[int, str | None, dict[str, Any]]:
        # Signed anew for each request: the provider takes each assertion's ``jti`` only once.
        body, headers = dict(form), {}
        if self.config.client_key is not None:
            body |= {
                "client_id": self.config.client_id,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.client_assertion(metadata),
            }
        else:
            headers["Authorization"] = _basic_auth(self.config.client_id, self.config.client_secret or "")
        if self.dpop is not None:
            headers["DPoP"] = self.dpop.proof("POST", url, nonce=self.dpop_nonce)
        return await self._request("POST", url, what, data=body, headers=headers)

    async def _userinfo(self, metadata: ProviderMetadata, tokens: Tokens) -> dict[str, Any]:
        """The userinfo endpoint's claims, read with the access token (and a proof bound to it)."""
        url = metadata.userinfo_endpoint
        if url is None:
            raise ProviderError("discovery_no_userinfo")
        used = self.dpop_nonce
        status, nonce, answer = await self._userinfo_once(url, tokens)
        if status == 401 and self.dpop is not None and nonce and nonce != used:
            # RFC 9449 §9: a resource server asks for a nonce with a 401 and a new DPoP-Nonce.
            status, _, answer = await self._userinfo_once(url, tokens)
        if status == 401:
            raise TokenError("userinfo_refused")
        if status != 200:
            raise ProviderError("userinfo_status")
        return answer

    async def _userinfo_once(self, url: str, tokens: Tokens) -> tuple[int, str | None, dict[str, Any]]:
        headers = {"Authorization": f"{'DPoP' if self.dpop else 'Bearer'} {tokens.access_token}"}
        if self.dpop is not None:
            headers["DPoP"] = self.dpop.proof("GET", url, nonce=self.dpop_nonce, access_token=tokens.access_token)
        return await self._request("GET", url, "userinfo", headers=headers)

    def client_assertion(self, metadata: ProviderMetadata) -> str:
        """``private_key_jwt`` (RFC 7523): one-use, 60 seconds, audience the issuer (as HelseID
        wants it: one audience for the PAR and token endpoints alike)."""
        if self.config.client_key is None:
            raise RuntimeError("no client key configured")
        key = self.config.client_key
        now = int(self._now())
        header = {"alg": key.alg or ("RS256" if key.key_type == "RSA" else "ES256"), "typ": "JWT"}
        if key.kid:
            header["kid"] = key.kid
        claims = {
            "iss": self.config.client_id,
            "sub": self.config.client_id,
            "aud": metadata.issuer,
            "jti": secrets.token_urlsafe(24),
            "iat": now,
            "nbf": now,
            "exp": now + 60,
        }
        return jwt.encode(header, claims, key, algorithms=[header["alg"]])

    # -- ID token

    async def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """OIDC Core §3.1.3.7; returns the claims."""
        metadata = await self.metadata()
        claims = await self._signed_claims(metadata, id_token)
        now = self._now()
        if claims.get("iss") != metadata.issuer:
            raise TokenError("wrong_issuer")
        audience = claims.get("aud")
        if audience != self.config.client_id and audience != [self.config.client_id]:
            # Only us: a token also meant for another party is not accepted.
            raise TokenError("wrong_audience")
        if "azp" in claims and claims["azp"] != self.config.client_id:
            raise TokenError("wrong_audience")
        exp, iat, nbf = (_time(claims, name) for name in ("exp", "iat", "nbf"))
        if exp <= now - CLOCK_SKEW_SECONDS:
            raise TokenError("expired")
        if iat > now + CLOCK_SKEW_SECONDS or iat < now - FLOW_TTL_SECONDS - CLOCK_SKEW_SECONDS:
            raise TokenError("bad_issued_at")
        if nbf > now + CLOCK_SKEW_SECONDS:
            raise TokenError("not_yet_valid")
        given = claims.get("nonce")
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), nonce.encode()):
            raise TokenError("wrong_nonce")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise TokenError("subject_claim_missing")
        return claims

    async def verify_access_token(self, access_token: str, audience: str) -> AccessToken:
        """A DPoP-bound access token the provider issued to a program for our API (a JWT, as
        HelseID's are): signature, ``iss``, ``aud``, ``exp``, ``nbf``, ``cnf.jkt`` and the
        minimum security level; the caller checks the proof against that thumbprint."""
        metadata = await self.metadata()
        claims = await self._signed_claims(metadata, access_token)
        if claims.get("iss") != metadata.issuer:
            raise TokenError("wrong_issuer")
        given = claims.get("aud")
        if given != audience and not (isinstance(given, list) and audience in given):
            raise TokenError("wrong_audience")
        now = self._now()
        if _time(claims, "exp") <= now - CLOCK_SKEW_SECONDS:
            raise TokenError("expired")
        if _time(claims, "nbf") > now + CLOCK_SKEW_SECONDS:
            raise TokenError("not_yet_valid")
        confirmation = claims.get("cnf")
        jkt = confirmation.get("jkt") if isinstance(confirmation, dict) else None
        if not isinstance(jkt, str) or not jkt:
            # A bearer token is not accepted from programs: a leaked one would be enough.
            raise TokenError("token_not_bound")
        hpr_number = claims.get(self.config.hpr_claim)
        if hpr_number is not None and not is_hpr_number(hpr_number):
            raise TokenError("hpr_number_invalid")
        self._check_security_level(claims)
        return AccessToken(jkt, hpr_number)

    async def _signed_claims(self, metadata: ProviderMetadata, token: str) -> dict[str, Any]:
        """The claims of a JWT the provider signed with a key in its JWKS."""
        algorithms = sorted(metadata.signing_algorithms)
        try:
            try:
                decoded = jwt.decode(token, await self.keys(), algorithms=algorithms)
            except InvalidKeyIdError:
                # The provider may have rotated its keys: look again (rate-limited), once.
                decoded = jwt.decode(token, await self.keys(refresh=True), algorithms=algorithms)
        except InvalidKeyIdError:
            raise TokenError("unknown_key") from None
        except (JoseError, ValueError, TypeError, KeyError):
            raise TokenError("bad_signature") from None
        return decoded.claims

    # -- cached provider documents

    async def metadata(self) -> ProviderMetadata:
        if self._metadata is not None and self._now() - self._metadata_at < DISCOVERY_TTL_SECONDS:
            return self._metadata
        async with self._lock:
            if self._metadata is None or self._now() - self._metadata_at >= DISCOVERY_TTL_SECONDS:
                url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
                doc = await self._fetch_json("GET", url, "discovery")
                self._metadata = ProviderMetadata.from_document(doc, self.config.issuer)
                self._metadata_at = self._now()
        return self._metadata

    async def keys(self, *, refresh: bool = False) -> KeySet:
        metadata = await self.metadata()
        async with self._lock:
            stale = refresh and self._now() - self._keys_at >= self.jwks_min_refresh_seconds
            if self._keys is None or stale:
                doc = await self._fetch_json("GET", metadata.jwks_uri, "jwks")
                try:
                    signing = [k for k in doc["keys"] if isinstance(k, dict) and k.get("use", "sig") == "sig"]
                    self._keys = KeySet.import_key_set({"keys": signing})
                except (JoseError, ValueError, TypeError, KeyError):
                    raise ProviderError("jwks_invalid") from None
                self._keys_at = self._now()
            return self._keys

    async def _fetch_json(self, method: str, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
        status, _, doc = await self._request(method, url, what, **kwargs)
        if status != 200:
            raise ProviderError(f"{what}_status")
        return doc

    async def _request(self, method: str, url: str, what: str, **kwargs: Any) -> tuple[int, str | None, dict[str, Any]]:
        """Status, the ``DPoP-Nonce`` the provider sent (remembered for the next proof) and the
        JSON object answered (empty when an error status came without one)."""
        if self._http is None:
            raise RuntimeError("OidcClient not started")
        try:
            async with self._http.request(method, url, allow_redirects=False, **kwargs) as response:
                body = await response.content.read(MAX_RESPONSE_BYTES + 1)
                status = response.status
                nonce = response.headers.get("DPoP-Nonce")
        except (TimeoutError, aiohttp.ClientError):
            raise ProviderError(f"{what}_unreachable") from None
        if nonce is not None and self.dpop is not None and 0 < len(nonce) <= 512:
            self.dpop_nonce = nonce
        if len(body) > MAX_RESPONSE_BYTES:
            raise ProviderError(f"{what}_too_large")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            if 200 <= status < 300:
                raise ProviderError(f"{what}_invalid")
            doc = {}
        return status, nonce, doc


def _time(claims: Mapping[str, Any], name: str) -> float:
    """A NumericDate claim; ``nbf`` is optional, ``exp`` and ``iat`` are not."""
    value = claims.get(name, 0 if name == "nbf" else None)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TokenError("bad_times")
    return float(value)


def is_hpr_number(value: object) -> bool:
    return isinstance(value, str) and _HPR_NUMBER.fullmatch(value) is not None


def _security_level(value: object) -> int | None:
    """HelseID sends the level as a string ("3", "4"); a number is taken too."""
    if isinstance(value, str) and value.isdigit() and len(value) <= 2:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if value is None:
        return None
    raise TokenError("security_level_invalid")


def _basic_auth(client_id: str, secret: str) -> str:
    # RFC 6749 §2.3.1: each part form-urlencoded before base64.
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(pair).decode()
