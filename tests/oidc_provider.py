"""A small, real OpenID Connect provider on a loopback port, for the OIDC login tests.

It checks what a strict provider checks (client authentication, single-use codes bound to
client, redirect URI and PKCE S256 challenge) and signs ID tokens with RS256. Tests turn its
knobs to misbehave: ``sign_with`` another key, ``tamper`` with the claims, ``deny`` the login.
PKCE is checked with authlib's implementation, not ours, so a wrong challenge cannot pass
for a right one.

It speaks HelseID's additions too, each checked here independently of the client's code:
pushed authorization requests (RFC 9126; ``require_par`` refuses a plain /authorize),
``private_key_jwt`` (single-use ``jti``, audience the issuer), and DPoP (RFC 9449): a proof
at PAR binds the code to the key, a proof at /token binds the access token (a JWT with
``cnf.jkt``), ``dpop_nonce`` makes it demand a nonce first, and /userinfo refuses a bound
token without a fresh proof of the same key for that method, URL and token.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlencode

from aiohttp import BasicAuth, web
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, Key, KeySet, RSAKey

from tests.services import free_port


def rsa_key(kid: str) -> RSAKey:
    """A fresh RS256 signing key made with ``cryptography``."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return RSAKey.import_key(private, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


PROOF_ALGORITHMS = ["ES256", "RS256", "PS256"]
PROOF_WINDOW_SECONDS = 60
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    subject: str
    jkt: str | None = None
    """The DPoP key the code is bound to (a proof came with the pushed request)."""


@dataclass
class Pushed:
    query: dict[str, str]
    jkt: str | None
    expires: float


class ProofRefused(Exception):
    """``error`` is the OAuth error code to answer with."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


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
    userinfo_claims: dict[str, Any] = field(default_factory=dict)
    """Claims /userinfo gives (besides ``sub``), and the ID token does not."""
    require_par: bool = False
    require_dpop: bool = False
    """Refuse a token request without a DPoP proof (HelseID's rule)."""
    dpop_nonce: str | None = None
    """When set, a proof at /token or /userinfo without this nonce gets ``use_dpop_nonce``."""
    userinfo_nonce: str | None = None
    """A nonce of /userinfo's own (a resource server may keep its own); else ``dpop_nonce``."""
    bearer_despite_dpop: bool = False
    """Misbehave: issue a ``Bearer`` token even when a proof came."""
    port: int = field(default_factory=free_port)
    jwks_fetches: int = 0
    par_requests: list[dict[str, str]] = field(default_factory=list)
    userinfo_requests: int = 0
    access_tokens: list[str] = field(default_factory=list)
    """Every access token issued, for replay tests."""
    token_requests: list[dict[str, str]] = field(default_factory=list)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    _grants: dict[str, Grant] = field(default_factory=dict)
    _assertions: set[str] = field(default_factory=set)
    _proofs: set[str] = field(default_factory=set)
    _pushed: dict[str, Pushed] = field(default_factory=dict)
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
        app.router.add_post("/par", self._par)
        app.router.add_get("/userinfo", self._userinfo)
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
                "pushed_authorization_request_endpoint": f"{self.issuer}/par",
                "require_pushed_authorization_requests": self.require_par,
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "dpop_signing_alg_values_supported": PROOF_ALGORITHMS,
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_fetches += 1
        return web.json_response(KeySet(list(self.keys)).as_dict(private=False))

    async def _par(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.par_requests.append(form)
        if not self._client_authenticated(request, form):
            return _oauth_error(401, "invalid_client")
        if "request_uri" in form:
            return _oauth_error(400, "invalid_request")  # RFC 9126 §2.1
        query = {k: v for k, v in form.items() if not k.startswith("client_assertion")}
        if (problem := self._request_problem(query)) is not None:
            return _oauth_error(400, problem)
        jkt = None
        if "DPoP" in request.headers:
            try:
                jkt = self._proof_key(request)
            except ProofRefused as refused:
                return _oauth_error(400, refused.error, nonce=self.dpop_nonce)
        request_uri = REQUEST_URI_PREFIX + secrets.token_urlsafe(24)
        self._pushed[request_uri] = Pushed(query, jkt, time.time() + 60)
        return web.json_response({"request_uri": request_uri, "expires_in": 60}, status=201)

    def _request_problem(self, query: dict[str, str]) -> str | None:
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            return "unauthorized_client"
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return "invalid_request"
        if "openid" not in query.get("scope", "").split() or not query.get("nonce") or not query.get("state"):
            return "invalid_request"
        if not query.get("redirect_uri", "").endswith("/api/oidc/callback"):
            return "invalid_request"
        return None

    async def _authorize(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.authorize_requests.append(query)
        jkt = None
        if "request_uri" in query:
            # Single use, this client's, not expired; the pushed parameters are the request.
            pushed = self._pushed.pop(query["request_uri"], None)
            if pushed is None or pushed.expires < time.time() or query.get("client_id") != self.client_id:
                raise web.HTTPBadRequest(text="invalid_request_uri")
            query, jkt = pushed.query, pushed.jkt
        elif self.require_par:
            raise web.HTTPBadRequest(text="invalid_request: pushed authorization request required")
        if (problem := self._request_problem(query)) is not None:
            raise web.HTTPBadRequest(text=problem)
        redirect_uri = query["redirect_uri"]
        answer = {"state": query["state"], "iss": self.issuer}
        if self.deny:
            answer |= {"error": "access_denied", "error_description": "<script>user cancelled</script>"}
        else:
            code = secrets.token_urlsafe(24)
            self._grants[code] = Grant(
                self.client_id, redirect_uri, query["code_challenge"], query["nonce"], self.subject, jkt
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
        jkt = None
        if "DPoP" in request.headers or self.require_dpop:
            try:
                jkt = self._proof_key(request)
            except ProofRefused as refused:
                return _oauth_error(400, refused.error, nonce=self.dpop_nonce)
        grant = self._grants.pop(form.get("code", ""), None)  # single use
        if grant is None or grant.client_id != self.client_id or grant.redirect_uri != form.get("redirect_uri"):
            return _oauth_error(400, "invalid_grant")
        if create_s256_code_challenge(form.get("code_verifier", "")) != grant.challenge:
            return _oauth_error(400, "invalid_grant")
        if grant.jkt is not None and grant.jkt != jkt:
            return _oauth_error(400, "invalid_dpop_proof")  # RFC 9449 §10: the code is bound
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
        bound = jkt is not None and not self.bearer_despite_dpop
        access_token = self.issue_access_token(grant.subject, jkt if bound else None)
        return web.json_response(
            {"access_token": access_token, "token_type": "DPoP" if bound else "Bearer", "expires_in": 300,
             "id_token": id_token},
            headers={"Cache-Control": "no-store"},
        )

    def issue_access_token(self, subject: str, jkt: str | None, **claims: Any) -> str:
        """An access token (a JWT, as HelseID's), bound to the DPoP key ``jkt`` when given.
        Tests call it directly to stand in for a journal system's own token request."""
        now = int(time.time())
        access = {"iss": self.issuer, "sub": subject, "client_id": self.client_id, "iat": now, "exp": now + 300,
                  "jti": secrets.token_urlsafe(16), **claims}
        if jkt is not None:
            access["cnf"] = {"jkt": jkt}
        token = jwt.encode({"alg": "RS256", "kid": self.keys[0].kid, "typ": "at+jwt"}, access, self.keys[0])
        self.access_tokens.append(token)
        return token

    async def _userinfo(self, request: web.Request) -> web.Response:
        """A resource server's checks (RFC 9449 §7): a bound token only with ``DPoP`` and a
        proof of its key for this request and this token."""
        self.userinfo_requests += 1
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            claims = jwt.decode(token, self.keys[0], algorithms=["RS256"]).claims
        except (JoseError, ValueError):
            return _resource_error("Bearer", "invalid_token")
        if claims.get("exp", 0) < time.time():
            return _resource_error("Bearer", "invalid_token")
        jkt = claims.get("cnf", {}).get("jkt")
        if jkt is None:
            if scheme != "Bearer":
                return _resource_error("Bearer", "invalid_token")
        else:
            if scheme != "DPoP":
                return _resource_error("DPoP", "invalid_token")  # a bound token used as a bearer token
            nonce = self.userinfo_nonce or self.dpop_nonce
            try:
                if self._proof_key(request, access_token=token, nonce=nonce) != jkt:
                    return _resource_error("DPoP", "invalid_dpop_proof")
            except ProofRefused as refused:
                return _resource_error("DPoP", refused.error, nonce=nonce)
        return web.json_response({"sub": claims["sub"], **self.userinfo_claims})

    def _proof_key(self, request: web.Request, *, access_token: str | None = None, nonce: str | None = None) -> str:
        """The thumbprint of the key that signed the request's one valid DPoP proof (RFC 9449 §4.3)."""
        proofs = request.headers.getall("DPoP", [])
        if len(proofs) != 1:
            raise ProofRefused("invalid_dpop_proof")
        try:
            header = jws.extract_compact(proofs[0].encode()).protected
            if header.get("typ") != "dpop+jwt" or header.get("alg") not in PROOF_ALGORITHMS:
                raise ProofRefused("invalid_dpop_proof")
            public = header.get("jwk")
            if not isinstance(public, dict) or "d" in public:
                raise ProofRefused("invalid_dpop_proof")
            key = JWKRegistry.import_key(public)
            claims = jwt.decode(proofs[0], key, algorithms=[header["alg"]]).claims
        except (JoseError, ValueError, TypeError, KeyError):
            raise ProofRefused("invalid_dpop_proof") from None
        target = str(request.url.with_query(None).with_fragment(None))
        iat, jti = claims.get("iat"), claims.get("jti")
        if claims.get("htm") != request.method or claims.get("htu") != target:
            raise ProofRefused("invalid_dpop_proof")
        if not isinstance(iat, int) or abs(iat - time.time()) > PROOF_WINDOW_SECONDS:
            raise ProofRefused("invalid_dpop_proof")
        if not isinstance(jti, str) or jti in self._proofs:
            raise ProofRefused("invalid_dpop_proof")
        if access_token is not None:
            digest = hashlib.sha256(access_token.encode()).digest()
            if claims.get("ath") != base64.urlsafe_b64encode(digest).rstrip(b"=").decode():
                raise ProofRefused("invalid_dpop_proof")
        expected = nonce or self.dpop_nonce
        if expected is not None and claims.get("nonce") != expected:
            raise ProofRefused("use_dpop_nonce")
        self._proofs.add(jti)
        return key.thumbprint()

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


def _oauth_error(status: int, error: str, *, nonce: str | None = None) -> web.Response:
    headers = {"DPoP-Nonce": nonce} if nonce and error == "use_dpop_nonce" else {}
    body = {"error": error, "error_description": "refused by the test provider"}
    return web.json_response(body, status=status, headers=headers)


def _resource_error(scheme: str, error: str, *, nonce: str | None = None) -> web.Response:
    headers = {"WWW-Authenticate": f'{scheme} error="{error}", algs="{" ".join(PROOF_ALGORITHMS)}"'}
    if nonce and error == "use_dpop_nonce":
        headers["DPoP-Nonce"] = nonce
    return web.Response(status=401, headers=headers)
