"""The one sealing helper, and the three formats built on it opening values written before it."""

from __future__ import annotations

import os

import pyotp
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from signaling.protocol import Role
from woundcare.auth.invitations import Invitations
from woundcare.auth.oidc import Flow, FlowError, FlowSealer
from woundcare.auth.totp import TotpBox
from woundcare.crypto import Binding, open_with
from woundcare.crypto.errors import CryptoError, SealError
from woundcare.crypto.sealing import SLICE, NONCE_SIZE, OVERHEAD, seal, seal_into, unseal

KEY = bytes(range(32))
AAD = b"woundcare/test/v1"
SECRET = b"fixed test server secret"


def test_round_trip_with_a_fresh_nonce_each_time() -> None:
    first, second = seal(KEY, b"wound", AAD), seal(KEY, b"wound", AAD)
    assert len(first) == OVERHEAD + len(b"wound")
    assert first[:12] != second[:12]
    assert unseal(KEY, first, AAD) == unseal(KEY, memoryview(second), AAD) == b"wound"
    assert unseal(KEY, seal(KEY, b"", AAD), AAD) == b""


def test_seal_into_writes_in_place() -> None:
    buffer = bytearray(OVERHEAD + 5 + 3)
    size = seal_into(KEY, b"wound", AAD, memoryview(buffer))
    assert size == OVERHEAD + 5
    assert unseal(KEY, buffer[:size], AAD) == b"wound"
    with pytest.raises(ValueError, match="buffer too small"):
        seal_into(KEY, b"wound", AAD, memoryview(bytearray(OVERHEAD + 4)))


@pytest.mark.parametrize("length", [0, 1, SLICE - 1, SLICE, 3 * SLICE + 17])
def test_seal_into_in_slices_makes_what_one_call_makes(length: int) -> None:
    plaintext = bytes(range(256)) * (length // 256) + bytes(length % 256)
    buffer = bytearray(OVERHEAD + length)
    size = seal_into(KEY, plaintext, AAD, memoryview(buffer))
    nonce = bytes(buffer[:NONCE_SIZE])
    assert buffer[NONCE_SIZE:size] == AESGCM(KEY).encrypt(nonce, plaintext, AAD)
    assert unseal(KEY, buffer, AAD) == plaintext


def test_seal_into_yields_the_cpu_between_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each slice is a point where a thread that woke meanwhile (the event loop's) gets the
    CPU, rather than at the kernel's next tick (issue 20)."""
    real = os.sched_yield
    yields = []
    monkeypatch.setattr(os, "sched_yield", lambda: yields.append(real()))
    seal_into(KEY, bytes(3 * SLICE + 17), AAD, memoryview(bytearray(OVERHEAD + 3 * SLICE + 17)))
    assert len(yields) == 4


@pytest.mark.parametrize(
    "change",
    [
        lambda v: (KEY, v[:-1] + bytes([v[-1] ^ 1]), AAD),  # a changed bit
        lambda v: (KEY, v, AAD + b"x"),  # shown for another place
        lambda v: (bytes(32), v, AAD),  # another key
        lambda v: (KEY, v[: OVERHEAD - 1], AAD),  # cut short
    ],
)
def test_anything_changed_does_not_open(change) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SealError) as caught:
        unseal(*change(seal(KEY, b"wound", AAD)))
    assert isinstance(caught.value, CryptoError)
    assert b"wound".decode() not in str(caught.value)


def test_refuses_a_key_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        seal(KEY[:16], b"wound", AAD)


# Values written by the code before this helper existed (same secret and keys as above).
TOTP_TODAY = bytes.fromhex(
    "45a7b4b72b6e00c2413dfb66fc64d56cdf7511beefb597fe6c7407cbe9ea3fff"
    "304feed018306f45fd3261d14a653eee3356f0a639409c8eaa7b5cdb"
)
FLOW_TODAY = "tvJCoEpeon-SQsktNzINe9dO8JuQ5cPvV-oWo4yhC6zvwqAe7J-qTt7x33_eXs-2MC0cllw_wm8BkK81_A-cP_9X1q4"
INVITATION_TODAY = (
    "wc1.eyJjIjoiYzBuc3VsdGF0aW9uMSIsInIiOiJudXJzZSIsInMiOiJ1NyIsIm4iOiJLYXJpIiwiZyI6ImVhc3QiLCJp"
    "YXQiOjEwMDAwMDAsImV4cCI6MTAwMzYwMH0.KUfFt4sfyMT1WPlf0YEEb79tPDnyA1Db14QGKuUFmLI"
)
ENVELOPE_TODAY = bytes.fromhex(
    "01026b31b2fbb3dd2b23de97d50fd202c468d99cf5daf26614d9ee0e158a606777e7345bdfc1e58742846e"
)


def test_a_totp_secret_sealed_before_still_opens() -> None:
    box = TotpBox(SECRET)
    code = pyotp.TOTP("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").now()
    assert box.verify(7, TOTP_TODAY, code)
    with pytest.raises(SealError):
        box.verify(8, TOTP_TODAY, code)  # bound to its user


def test_a_login_cookie_sealed_before_still_opens() -> None:
    sealer = FlowSealer(SECRET)
    assert sealer.open(FLOW_TODAY, "st", now=1_000_000) == Flow("st", "nn", "vv", 1_000_000)
    with pytest.raises(FlowError):
        FlowSealer(b"another secret").open(FLOW_TODAY, "st", now=1_000_000)


def test_an_invitation_issued_before_still_verifies() -> None:
    invitation = Invitations(SECRET, 3600).verify(INVITATION_TODAY, now=1_000_001)
    assert (invitation.consultation, invitation.role, invitation.subject) == ("c0nsultation1", Role.NURSE, "u7")


def test_a_record_envelope_sealed_before_still_opens() -> None:
    assert open_with(KEY, Binding(1, "snapshot", "rec1"), ENVELOPE_TODAY) == b"wound photo"
