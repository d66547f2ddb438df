"""A small, real OpenID Connect provider on a loopback port, for the OIDC login tests.

It checks what a strict provider checks (client authentication, single-use codes bound to
client, redirect URI and PKCE S256 challenge) and signs ID tokens with RS256. Tests turn its
knobs to misbehave: ``sign_with`` another key, ``tamper`` with the claims, ``deny`` the login.
PKCE is checked with authlib's implementation, not ours, so a wrong challenge cannot pass
for a right one.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlencode

from aiohttp import BasicAuth, web
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet, RSAKey

from tests.services import free_port


def rsa_key(kid: str) -> RSAKey:
    """A fresh RS256 signing key made with ``cryptography``."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return RSAKey.import_key(private, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    subject: str


@dataclass
class OidcProvider:
    client_id: str = "woundcare-test"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    client_public_key: Key | None = None
    """When set, the client must authenticate with ``private_key_jwt`` signed by its private half."""
    subject: str = "provider-subject-1"
    claims: dict[str, Any] = field(default_factory=dict)
    """Extra ID-token claims, e.g. HelseID's ``helseid://claims/identity/pid``."""
    keys: list[RSAKey] = field(default_factory=lambda: [rsa_key("k1")])
    """Published in the JWKS."""
    sign_with: RSAKey | None = None
    """Sign ID tokens with this key instead of ``keys[0]`` (a key the client must not trust)."""
    tamper: Callable[[dict[str, Any]], None] | None = None
    deny: bool = False
    """Answer /authorize with ``error=access_denied``, as when the user cancels."""
    port: int = field(default_factory=free_port)
    jwks_fetches: int = 0
    token_requests: list[dict[str, str]] = field(default_factory=list)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    _grants: dict[str, Grant] = field(default_factory=dict)
    _assertions: set[str] = field(default_factory=set)
    _runner: web.AppRunner | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> OidcProvider:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
                "authorization_response_iss_parameter_supported": True,
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_fetches += 1
        return web.json_response(KeySet(list(self.keys)).as_dict(private=False))

    async def _authorize(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.authorize_requests.append(query)
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            raise web.HTTPBadRequest(text="unauthorized_client")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            raise web.HTTPBadRequest(text="invalid_request: PKCE S256 required")
        if "openid" not in query.get("scope", "").split() or not query.get("nonce") or not query.get("state"):
            raise web.HTTPBadRequest(text="invalid_request")
        redirect_uri = query.get("redirect_uri", "")
        if not redirect_uri.endswith("/api/oidc/callback"):
            raise web.HTTPBadRequest(text="invalid_request: redirect_uri not registered")
        answer = {"state": query["state"], "iss": self.issuer}
        if self.deny:
            answer |= {"error": "access_denied", "error_description": "<script>user cancelled</script>"}
        else:
            code = secrets.token_urlsafe(24)
            self._grants[code] = Grant(
                self.client_id, redirect_uri, query["code_challenge"], query["nonce"], self.subject
            )
            answer["code"] = code
        raise web.HTTPFound(f"{redirect_uri}?{urlencode(answer)}")

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.token_requests.append(form)
        if not self._client_authenticated(request, form):
            return _oauth_error(401, "invalid_client")
        if form.get("grant_type") != "authorization_code":
            return _oauth_error(400, "unsupported_grant_type")
        grant = self._grants.pop(form.get("code", ""), None)  # single use
        if grant is None or grant.client_id != self.client_id or grant.redirect_uri != form.get("redirect_uri"):
            return _oauth_error(400, "invalid_grant")
        if create_s256_code_challenge(form.get("code_verifier", "")) != grant.challenge:
            return _oauth_error(400, "invalid_grant")
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": grant.subject,
            "aud": self.client_id,
            "nonce": grant.nonce,
            "iat": now,
            "exp": now + 300,
            **self.claims,
        }
        if self.tamper is not None:
            self.tamper(claims)
        key = self.sign_with or self.keys[0]
        id_token = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)
        return web.json_response(
            {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 300, "id_token": id_token},
            headers={"Cache-Control": "no-store"},
        )

    def _client_authenticated(self, request: web.Request, form: dict[str, str]) -> bool:
        if self.client_public_key is not None:
            return self._assertion_ok(form)
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            auth = BasicAuth.decode(header)
        except ValueError:
            return False
        # RFC 6749 §2.3.1: both parts are form-urlencoded inside Basic.
        login, password = unquote_plus(auth.login), unquote_plus(auth.password)
        return login == self.client_id and secrets.compare_digest(password, self.client_secret)

    def _assertion_ok(self, form: dict[str, str]) -> bool:
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return False
        try:
            token = jwt.decode(form.get("client_assertion", ""), self.client_public_key, algorithms=["RS256", "ES256"])
        except (JoseError, ValueError):
            return False
        claims, now = token.claims, time.time()
        fresh = isinstance(claims.get("exp"), int) and now < claims["exp"] <= now + 60
        jti = claims.get("jti")
        if not (claims.get("iss") == claims.get("sub") == self.client_id and claims.get("aud") == self.issuer):
            return False
        if not fresh or not isinstance(jti, str) or jti in self._assertions:
            return False
        self._assertions.add(jti)
        return True


def _oauth_error(status: int, error: str) -> web.Response:
    return web.json_response({"error": error, "error_description": "refused by the test provider"}, status=status)
