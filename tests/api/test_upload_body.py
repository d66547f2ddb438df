"""How an upload's body is gathered: the pieces as they arrived, never past the cap; and a
large body read in batches without stalling the connection's next request."""

from __future__ import annotations

from collections.abc import AsyncIterator

from woundcare.api.snapshots import _gathered

PIECES = [b"\xff\xd8" + bytes(range(256)) * 100, b"x" * 70_000, b"\xff\xd9"]


async def arriving(pieces: list[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def test_the_pieces_as_they_arrived() -> None:
    gathered = await _gathered(arriving(PIECES), 20 * 1024 * 1024)
    assert gathered == PIECES
    assert all(a is b for a, b in zip(gathered, PIECES, strict=True))


async def test_past_the_cap_is_none() -> None:
    assert await _gathered(arriving(PIECES), sum(map(len, PIECES))) == PIECES
    assert await _gathered(arriving(PIECES), sum(map(len, PIECES)) - 1) is None
