"""AES-256-GCM sealing: the one way woundcare encrypts bytes under a key it holds.

Sealed value::

    offset     size        field
    0          12          nonce, random, drawn by ``seal`` for every call
    12         len(p)+16   ciphertext of p, then the 16-byte GCM tag

The associated data (not stored, rebuilt by the opener) says what the value is and where it
belongs, so a value moved to another place or purpose does not open. Users add their own
framing around this: :mod:`~woundcare.crypto.aead` puts a version and key id before it, the
OIDC login cookie base64url-encodes it, a TOTP secret is stored as it is.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import SealError

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE
"""Bytes a sealed value has beyond its plaintext."""

Bytes = bytes | bytearray | memoryview

SLICE = 256 * 1024
"""What :func:`seal_into` encrypts per call into the library. AES-GCM holds the GIL for the
whole call: a 20 MB photo in one call holds it for about 8 ms, past the interpreter's switch
interval (5 ms), after which a thread waiting for it (the event loop's) gets it between two
slices, each about 0.1 ms, rather than at the end (issue 20)."""


def seal(key: bytes, plaintext: Bytes, aad: bytes) -> bytes:
    """``plaintext`` encrypted under ``key`` with a fresh random nonce, bound to ``aad``."""
    nonce = _nonce()
    return nonce + cipher(key).encrypt(nonce, plaintext, aad)


def seal_into(key: bytes, plaintext: Bytes, aad: bytes, out: memoryview) -> int:
    """Like :func:`seal`, but write the sealed value to the start of ``out`` and return its size.

    For multi-megabyte payloads: the ciphertext is made in place, neither joined to the nonce
    (a copy) nor freshly allocated (page faults on every new buffer), and in slices (see
    :data:`SLICE`). GCM is a stream mode: the slices make the same ciphertext and tag as one
    call would, so :func:`unseal` opens the value as it opens any other.
    """
    size = OVERHEAD + len(plaintext)
    if len(out) < size:
        raise ValueError(f"buffer too small for the sealed value ({len(out)} < {size} bytes)")
    nonce = _nonce()
    out[:NONCE_SIZE] = nonce
    encryptor = Cipher(algorithms.AES(_checked(key)), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    source = memoryview(plaintext).cast("B")
    for start in range(0, len(source), SLICE):
        piece = source[start : start + SLICE]
        # ``update_into`` asks for room for a block more than it writes; the tag's place
        # after the ciphertext gives it that.
        at = NONCE_SIZE + start
        encryptor.update_into(piece, out[at : at + len(piece) + TAG_SIZE])
        # Between slices, the CPU to a thread that woke meanwhile (the kernel would preempt
        # this one for it only at its next tick, up to 4 ms later; issue 20).
        os.sched_yield()
    encryptor.finalize()
    out[size - TAG_SIZE : size] = encryptor.tag
    return size


def unseal(key: bytes, sealed: Bytes, aad: bytes) -> bytes:
    """The plaintext of ``sealed``; raises :class:`SealError` if it is too short, was changed,
    was sealed for other ``aad`` or under another key."""
    # A memoryview slices the ciphertext out of a multi-megabyte value without copying it.
    view = memoryview(sealed)
    if len(view) < OVERHEAD:
        raise SealError("sealed value too short")
    try:
        return cipher(key).decrypt(view[:NONCE_SIZE].tobytes(), view[NONCE_SIZE:], aad)
    except InvalidTag:
        raise SealError("authentication failed") from None


def cipher(key: bytes) -> AESGCM:
    """AES-256-GCM under ``key``; :class:`ValueError` unless it is :data:`KEY_SIZE` bytes."""
    return AESGCM(_checked(key))


def _checked(key: bytes) -> bytes:
    if len(key) != KEY_SIZE:
        raise ValueError(f"key must be {KEY_SIZE} bytes (got {len(key)})")
    return key


def _nonce() -> bytes:
    # Drawn here, for every seal and never taken in: a nonce reused under one key breaks GCM.
    return os.urandom(NONCE_SIZE)
