"""The log check (the autouse ``no_secrets_in_logs`` fixture, run around every test)
must be able to fail: its pattern catches each kind of secret and passes pseudonymous ids."""

from __future__ import annotations

from tests.conftest import _SECRETS


def test_the_secret_pattern_catches_tokens_ids_and_passwords() -> None:
    for leak in ("token wcd_abcdefgh1234", "session wcs_ABCDEFGHijkl", "join wc1.eyJjIjoiYWJj", "fnr 01018012371",
                 "password correct horse battery staple"):
        assert _SECRETS.search(leak), leak
    for clean in ("consultation F_k1UwxcyFRknqbS", "port 54321", "u12 d3", "2026-11-25T21:01:13"):
        assert not _SECRETS.search(clean), clean

