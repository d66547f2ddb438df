"""The password hasher as shipped. The suite hashes at Argon2's floor (tests/conftest.py
``cheap_password_hashes``), so the production parameters are checked here, on the hasher
the module made before any fixture replaced it."""

from __future__ import annotations

from argon2 import Type, extract_parameters
from argon2.profiles import RFC_9106_LOW_MEMORY

from tests.conftest import PRODUCTION_HASHER
from woundcare.auth import passwords


def test_the_shipped_hasher_is_argon2id_at_rfc_9106_low_memory_cost() -> None:
    hashed = PRODUCTION_HASHER.hash("a password")
    assert extract_parameters(hashed) == RFC_9106_LOW_MEMORY
    assert RFC_9106_LOW_MEMORY.type is Type.ID and RFC_9106_LOW_MEMORY.memory_cost == 64 * 1024
    assert PRODUCTION_HASHER.verify(hashed, "a password")


def test_the_suite_hashes_cheaply_and_its_hashes_carry_their_own_cost() -> None:
    cheap = passwords.hash_password("a password")
    assert extract_parameters(cheap).memory_cost < RFC_9106_LOW_MEMORY.memory_cost
    # A cheap hash still verifies with the shipped hasher: it reads the cost from the hash.
    assert PRODUCTION_HASHER.verify(cheap, "a password")
    assert passwords.verify_password(PRODUCTION_HASHER.hash("a password"), "a password")
