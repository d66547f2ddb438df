"""The one key derivation: the keys must stay the ones the first build derived, byte for byte,
or TOTP secrets, login cookies, invitation tokens and audit checkpoints stop opening."""

from __future__ import annotations

import pytest

from woundcare.audit.chain import derive_checkpoint_key
from woundcare.crypto.kdf import Purpose, derive_key

SECRET = b"fixed test server secret"

# HMAC-SHA256(SECRET, label), computed by the four derivations as written before this module.
TODAY = {
    Purpose.TOTP: "299f00daa0368cab04dd281339669059bbbba37707a5f1b01a0e698f4eb9ba59",
    Purpose.OIDC_FLOW: "e88555ae3255f1c6be208fa8199a8888970be9eee6e68aa859d1808c399ff5f6",
    Purpose.INVITATION: "9b5c9d1f5d4eb54c0da02e3ef3e1c831483f6bef2f1f6de4ef45badcb23ce46d",
    Purpose.AUDIT_CHECKPOINT: "70ed917046c50d29c926e0e6f14279a8b85a0b8695345cda28308cb27affd4d3",
    # Added with the journal document (issue 19); fixed from then on like the others.
    Purpose.JOURNAL_IDS: "68bed7f277fabc4e0198bd0dd335a512ff9b3238388ece0c5066c7957ce0cf08",
    # Added with webhooks (issue 19): fixed from then on, or endpoints' secrets stop opening.
    Purpose.WEBHOOK_SECRET: "eef6c1555ea8f23683e3fadd940cafc0d711ea9bcca9db567d8c15a1c1a9164e",
}


@pytest.mark.parametrize("purpose", list(Purpose))
def test_keys_equal_the_ones_derived_before(purpose: Purpose) -> None:
    assert derive_key(SECRET, purpose).hex() == TODAY[purpose]


def test_the_audit_chain_derives_through_it() -> None:
    assert derive_checkpoint_key(SECRET).hex() == TODAY[Purpose.AUDIT_CHECKPOINT]


def test_purposes_and_secrets_give_distinct_keys() -> None:
    keys = {derive_key(secret, purpose) for secret in (SECRET, b"another") for purpose in Purpose}
    assert len(keys) == 2 * len(Purpose)
    assert all(len(key) == 32 for key in keys)


def test_refuses_an_empty_secret_and_a_bare_label() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        derive_key(b"", Purpose.TOTP)
    with pytest.raises(TypeError, match="must be a Purpose"):
        derive_key(SECRET, b"woundcare totp v1")  # type: ignore[arg-type]
