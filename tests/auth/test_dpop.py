"""DPoP proofs and ``private_key_jwt`` client assertions as built, read back with joserfc and
``hashlib`` alone (RFC 9449 §4.2, RFC 7638, RFC 7523 §3); the resource server's check of a
program's proof against proofs built here by hand, one fault each."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from joserfc import jws, jwt
from joserfc.jwk import ECKey, JWKRegistry, OctKey, RSAKey

from woundcare.auth.dpop import DpopKey, ProofError, ProofsOverflow, ProofVerifier, comparable_uri
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


# -- the resource server's check of a program's proof (RFC 9449 §4.3)

URL = "https://woundcare.example/api/session"
TOKEN = "header.payload.signature"


def handmade(key: ECKey, *, typ: str = "dpop+jwt", alg: str = "ES256", private_jwk: bool = False, **claims: object) -> str:
    """A proof built here with joserfc alone, to break one rule at a time."""
    body = {"jti": "j-1", "htm": "GET", "htu": URL, "iat": 1_700_000_000,
            "ath": b64(hashlib.sha256(TOKEN.encode()).digest())} | claims
    header = {"typ": typ, "alg": alg, "jwk": key.as_dict(private=private_jwk)}
    return jwt.encode(header, body, key, algorithms=[alg])


@pytest.fixture(scope="module")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-256", private=True)


def verify(proof: str, key: ECKey, **overrides: object) -> None:
    arguments: dict = {"method": "GET", "url": URL + "?page=2", "access_token": TOKEN, "jkt": key.thumbprint(),
                       "now": 1_700_000_030} | overrides
    ProofVerifier().verify([proof], **arguments)


def test_a_handmade_proof_passes(ec_key: ECKey) -> None:
    verify(handmade(ec_key), ec_key)


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"typ": "JWT"}, "dpop_proof_invalid"),
        ({"private_jwk": True}, "dpop_proof_invalid"),
        ({"htu": URL + "/other"}, "dpop_wrong_request"),
        ({"htm": "POST"}, "dpop_wrong_request"),
        ({"ath": b64(hashlib.sha256(b"another").digest())}, "dpop_wrong_token"),
        ({"iat": 1_700_000_000 - 120}, "dpop_proof_stale"),
        ({"iat": "1700000000"}, "dpop_proof_stale"),
        ({"jti": 7}, "dpop_proof_invalid"),
    ],
    ids=["typ", "private key in header", "htu", "htm", "ath", "old iat", "iat a string", "jti not a string"],
)
def test_each_rule_refuses_its_fault(ec_key: ECKey, changes: dict, reason: str) -> None:
    with pytest.raises(ProofError) as refused:
        verify(handmade(ec_key, **changes), ec_key)
    assert refused.value.reason == reason


def test_a_symmetric_signature_is_refused(ec_key: ECKey) -> None:
    secret = OctKey.generate_key(256)
    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": ec_key.as_dict(private=False)}
    proof = jwt.encode(header, {"jti": "j", "htm": "GET", "htu": URL, "iat": 1_700_000_000}, secret, algorithms=["HS256"])
    with pytest.raises(ProofError) as refused:
        verify(proof, ec_key)
    assert refused.value.reason == "dpop_proof_invalid"


def test_a_proof_is_good_once_and_only_while_fresh(ec_key: ECKey) -> None:
    verifier, proof = ProofVerifier(), handmade(ec_key)
    arguments = {"method": "GET", "url": URL, "access_token": TOKEN, "jkt": ec_key.thumbprint()}
    verifier.verify([proof], now=1_700_000_000, **arguments)
    with pytest.raises(ProofError) as replayed:
        verifier.verify([proof], now=1_700_000_001, **arguments)
    assert replayed.value.reason == "dpop_proof_replayed"
    with pytest.raises(ProofError) as stale:
        verifier.verify([proof], now=1_700_000_061, **arguments)
    assert stale.value.reason == "dpop_proof_stale"
    with pytest.raises(ProofError) as none:
        verifier.verify([], now=1_700_000_000, **arguments)
    assert none.value.reason == "dpop_proof_missing"


@pytest.mark.parametrize(
    "htu",
    [
        "HTTPS://WoundCare.EXAMPLE/api/session",
        "https://woundcare.example:443/api/session",
        "https://woundcare.example/api/session?page=3#top",
        "https://woundcare.example/api/%73ession",
        "https://woundcare.example/api/./x/../session",
    ],
    ids=["case", "default port", "query and fragment", "percent-encoded", "dot segments"],
)
def test_the_htu_is_compared_normalized(ec_key: ECKey, htu: str) -> None:
    verify(handmade(ec_key, htu=htu), ec_key)


@pytest.mark.parametrize(
    "htu",
    [
        "https://woundcare.example:8443/api/session",
        "http://woundcare.example/api/session",
        "https://other.example/api/session",
        "https://woundcare.example/api/Session",
        "https://woundcare.example/api/session/",
        "https://woundcare.example/api/%2Fsession",
        "/api/session",
        "https://woundcare.example:99999/api/session",
    ],
    ids=["other port", "other scheme", "other host", "path case", "trailing slash", "encoded slash", "relative",
         "bad port"],
)
def test_an_htu_naming_another_target_is_refused(ec_key: ECKey, htu: str) -> None:
    with pytest.raises(ProofError) as refused:
        verify(handmade(ec_key, htu=htu), ec_key)
    assert refused.value.reason == "dpop_wrong_request"


def test_comparable_uri_follows_rfc_3986() -> None:
    assert comparable_uri("HTTP://[::1]:80/a/b/c/./../../g?q") == "http://[::1]/a/g"
    assert comparable_uri("https://h") == "https://h/"
    assert comparable_uri("https://h/%7e%41%2f") == "https://h/~A%2F"
    assert comparable_uri("ftp://h/") is None


def test_the_replay_memory_forgets_stale_proofs_and_refuses_past_its_bound(ec_key: ECKey) -> None:
    verifier = ProofVerifier(capacity=3)
    arguments = {"method": "GET", "url": URL, "access_token": TOKEN, "jkt": ec_key.thumbprint()}
    for n in range(3):
        verifier.verify([handmade(ec_key, jti=f"j-{n}")], now=1_700_000_000, **arguments)
    with pytest.raises(ProofsOverflow) as full:
        verifier.verify([handmade(ec_key, jti="j-3")], now=1_700_000_000, **arguments)
    assert (full.value.code, full.value.status, full.value.headers) == ("dpop_busy", 503, {"Retry-After": "1"})
    with pytest.raises(ProofError) as replayed:  # a replay is still named as one when full
        verifier.verify([handmade(ec_key, jti="j-0")], now=1_700_000_000, **arguments)
    assert replayed.value.reason == "dpop_proof_replayed"
    # Once their window is over the three are forgotten (they would be refused as stale).
    later = {"now": 1_700_000_061, **arguments}
    verifier.verify([handmade(ec_key, jti="j-3", iat=1_700_000_061)], **later)
    assert len(verifier._seen) == len(verifier._expiries) == 1
    # A proof dated ahead (within the window) is kept until its own window ends.
    verifier.verify([handmade(ec_key, jti="j-4", iat=1_700_000_121)], **later)
    verifier.verify([handmade(ec_key, jti="j-5", iat=1_700_000_125)], now=1_700_000_123, **arguments)
    assert verifier._seen == {f"{ec_key.thumbprint()}:j-4", f"{ec_key.thumbprint()}:j-5"}
