"""DPoP proofs and ``private_key_jwt`` client assertions as built, read back with joserfc and
``hashlib`` alone (RFC 9449 §4.2, RFC 7638, RFC 7523 §3)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from joserfc import jws, jwt
from joserfc.jwk import ECKey, JWKRegistry, RSAKey

from woundcare.auth.dpop import DpopKey
from woundcare.auth.oidc import OidcClient, OidcConfig, ProviderMetadata

ISSUER = "https://helseid-sts.test.nhn.no"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_proof_names_the_request_and_carries_only_the_public_key() -> None:
    key = DpopKey()
    proof = key.proof("get", "https://api.example/userinfo?x=1#frag", nonce="n-1", access_token="tok.en", now=1_700_000_000)
    header = jws.extract_compact(proof.encode()).protected
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256"
    assert "d" not in header["jwk"], "the private key must never leave"
    claims = jwt.decode(proof, JWKRegistry.import_key(header["jwk"]), algorithms=["ES256"]).claims
    assert claims["htm"] == "GET"
    assert claims["htu"] == "https://api.example/userinfo"
    assert claims["iat"] == 1_700_000_000 and claims["nonce"] == "n-1"
    assert claims["ath"] == b64(hashlib.sha256(b"tok.en").digest())
    assert len(claims["jti"]) >= 24


def test_each_proof_is_new_and_optional_claims_are_left_out() -> None:
    key = DpopKey()
    first, second = (jws.extract_compact(key.proof("POST", "https://as.example/token").encode()) for _ in range(2))
    claims = [json.loads(p.payload) for p in (first, second)]
    assert claims[0]["jti"] != claims[1]["jti"]
    assert "nonce" not in claims[0] and "ath" not in claims[0]


def test_the_thumbprint_is_rfc_7638() -> None:
    key = DpopKey()
    public = key.key.as_dict(private=False)
    canonical = json.dumps({k: public[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    assert key.thumbprint == b64(hashlib.sha256(canonical.encode()).digest())
    assert DpopKey().thumbprint != key.thumbprint


def metadata() -> ProviderMetadata:
    return ProviderMetadata(
        issuer=ISSUER,
        authorization_endpoint=f"{ISSUER}/connect/authorize",
        token_endpoint=f"{ISSUER}/connect/token",
        jwks_uri=f"{ISSUER}/.well-known/openid-configuration/jwks",
        signing_algorithms=frozenset({"RS256"}),
        iss_parameter=True,
    )


@pytest.mark.parametrize(
    "private, alg",
    [
        (RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "alg": "PS256"}, private=True), "PS256"),
        (RSAKey.generate_key(2048, parameters={"kid": "rsa-2"}, private=True), "RS256"),
        (ECKey.generate_key("P-256", parameters={"kid": "ec-1"}, private=True), "ES256"),
    ],
    ids=["PS256", "RS256 by default", "ES256"],
)
def test_a_client_assertion_is_rfc_7523(private: RSAKey | ECKey, alg: str) -> None:
    config = OidcConfig(issuer=ISSUER, client_id="client-9", redirect_uri="https://wc.example/api/oidc/callback",
                        client_key=private)
    client = OidcClient(config, now=lambda: 1_700_000_000)
    assertion = client.client_assertion(metadata())
    header = jws.extract_compact(assertion.encode()).protected
    assert header["alg"] == alg and header["kid"] == private.kid
    public = JWKRegistry.import_key(private.as_dict(private=False))
    claims = jwt.decode(assertion, public, algorithms=[alg]).claims
    assert claims["iss"] == claims["sub"] == "client-9"
    assert claims["aud"] == ISSUER, "HelseID wants its issuer as the audience"
    assert claims["iat"] == 1_700_000_000 and claims["exp"] == 1_700_000_060
    assert claims["jti"] != jwt.decode(client.client_assertion(metadata()), public, algorithms=[alg]).claims["jti"]
