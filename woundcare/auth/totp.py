"""Optional TOTP second factor. The shared secret is sealed with a key derived from the
server secret, so a database dump alone does not yield it."""

from __future__ import annotations

import hashlib
import hmac
import os

import pyotp
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class TotpBox:
    def __init__(self, server_secret: bytes) -> None:
        self._aead = AESGCM(hmac.new(server_secret, b"woundcare totp v1", hashlib.sha256).digest())

    def new_secret(self, user_id: int) -> tuple[str, bytes]:
        """A fresh base32 secret and its sealed form."""
        secret = pyotp.random_base32()
        return secret, self.seal(user_id, secret)

    @staticmethod
    def uri(secret: str, username: str) -> str:
        """The otpauth:// URI an authenticator app scans."""
        return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="woundcare")

    def seal(self, user_id: int, secret: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, secret.encode(), f"totp:{user_id}".encode())

    def verify(self, user_id: int, sealed: bytes, code: str) -> bool:
        secret = self._aead.decrypt(sealed[:12], sealed[12:], f"totp:{user_id}".encode()).decode()
        return pyotp.TOTP(secret).verify(code, valid_window=1)
