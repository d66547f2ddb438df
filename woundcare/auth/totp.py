"""Optional TOTP second factor. The shared secret is sealed with a key derived from the
server secret, so a database dump alone does not yield it."""

from __future__ import annotations

import pyotp

from ..crypto.kdf import Purpose, derive_key
from ..crypto.sealing import seal, unseal


class TotpBox:
    def __init__(self, server_secret: bytes) -> None:
        self._key = derive_key(server_secret, Purpose.TOTP)

    def new_secret(self, user_id: int) -> tuple[str, bytes]:
        """A fresh base32 secret and its sealed form."""
        secret = pyotp.random_base32()
        return secret, self.seal(user_id, secret)

    @staticmethod
    def uri(secret: str, username: str) -> str:
        """The otpauth:// URI an authenticator app scans."""
        return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="woundcare")

    def seal(self, user_id: int, secret: str) -> bytes:
        # Bound to the user: a sealed secret copied to another user's row does not open.
        return seal(self._key, secret.encode(), _aad(user_id))

    def verify(self, user_id: int, sealed: bytes, code: str) -> bool:
        secret = unseal(self._key, sealed, _aad(user_id)).decode()
        return pyotp.TOTP(secret).verify(code, valid_window=1)


def _aad(user_id: int) -> bytes:
    return f"totp:{user_id}".encode()
