"""How an upload's body is gathered: into one buffer as it arrives, reserved at its declared
size (pages taken only as bytes arrive), never past the cap or the declared length."""

from __future__ import annotations

import mmap
from collections.abc import AsyncIterator

import pytest

from woundcare.api.snapshots import _gathered

PIECES = [b"\xff\xd8" + bytes(range(256)) * 100, b"x" * 70_000, b"\xff\xd9"]


async def arriving(pieces: list[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


@pytest.mark.parametrize("declared", [None, sum(map(len, PIECES)), 10 * 1024 * 1024], ids=["chunked", "exact", "more"])
async def test_the_pieces_in_one_buffer_whatever_was_declared(declared: int | None) -> None:
    # "more": a multipart body's Content-Length covers the framing too, so its image part is
    # shorter than the reservation; the buffer is cut to what came.
    gathered = await _gathered(arriving(PIECES), 20 * 1024 * 1024, declared)
    assert gathered is not None and gathered == b"".join(PIECES)
    assert isinstance(gathered.obj, mmap.mmap) == (declared is not None)


async def test_past_the_cap_is_none_and_past_the_declared_length_is_refused() -> None:
    assert await _gathered(arriving(PIECES), len(b"".join(PIECES)) - 1, None) is None
    with pytest.raises(ValueError, match="Content-Length"):
        await _gathered(arriving(PIECES), 20 * 1024 * 1024, len(PIECES[0]))
