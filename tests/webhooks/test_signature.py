"""Our Standard Webhooks signatures against the spec's library, both ways, and its test vector."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from woundcare.crypto.webhook_signature import (
    TOLERANCE_SECONDS, SignatureError, new_secret, secret_key, sign, verify,
)

# The reference test vector of the Standard Webhooks libraries.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_reference_vector() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    ours = Webhook(VECTOR_SECRET).sign(VECTOR_ID, datetime.fromtimestamp(VECTOR_TIMESTAMP, UTC), VECTOR_BODY)
    assert ours == VECTOR_SIGNATURE


def test_the_library_verifies_ours_and_we_verify_the_librarys() -> None:
    secret, body, now = new_secret(), b'{"type":"consultation.queued"}', int(time.time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": sign(secret, "msg_1", now, body)}
    Webhook(secret).verify(body, headers, json_parse=False)
    theirs = Webhook(secret).sign("msg_1", datetime.fromtimestamp(now, UTC), body)
    verify(secret, "msg_1", str(now), f"v1,bm90IGl0 {theirs}", body, now)


def test_a_secret_is_32_random_bytes_behind_whsec() -> None:
    one, two = new_secret(), new_secret()
    assert one.startswith("whsec_") and one != two and len(secret_key(one)) == 32


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"body": b'{"test": 2432232315}'}, "no webhook-signature entry matches"),
        ({"msg_id": "msg_other"}, "no webhook-signature entry matches"),
        ({"secret": new_secret()}, "no webhook-signature entry matches"),
        ({"timestamp": str(VECTOR_TIMESTAMP - TOLERANCE_SECONDS - 1)}, "outside the tolerance"),
        ({"now": VECTOR_TIMESTAMP - TOLERANCE_SECONDS - 1}, "outside the tolerance"),
        ({"timestamp": "soon"}, "whole seconds"),
    ],
)
def test_what_does_not_verify(change: dict[str, object], rule: str) -> None:
    given: dict[str, object] = {
        "secret": VECTOR_SECRET, "msg_id": VECTOR_ID, "timestamp": str(VECTOR_TIMESTAMP),
        "signature": VECTOR_SIGNATURE, "body": VECTOR_BODY, "now": VECTOR_TIMESTAMP + TOLERANCE_SECONDS,
    }
    verify(**given)  # type: ignore[arg-type]
    with pytest.raises(SignatureError, match=rule):
        verify(**{**given, **change})  # type: ignore[arg-type]


@pytest.mark.parametrize("secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!"])
def test_a_malformed_secret_is_refused(secret: str) -> None:
    with pytest.raises(SignatureError):
        secret_key(secret)


def test_the_receivers_ten_lines_in_docs_verify_our_signature() -> None:
    """docs/webhooks.md's standard-library check, run as printed."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(code.strip().splitlines()) <= 12
    scope: dict[str, Any] = {}
    exec(code, scope)
    secret, body, now = new_secret(), b'{"type":"webhook.test"}', int(time.time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": sign(secret, "msg_1", now, body)}
    scope["verify"](secret, headers, body)
    with pytest.raises(ValueError, match="bad webhook signature"):
        scope["verify"](secret, headers, body + b" ")
