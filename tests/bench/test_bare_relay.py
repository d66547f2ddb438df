"""The bare relay's upload route, which ``bench.ingest`` holds woundcare's intake against: it
must read every byte of a body, whole or chunked, or the comparison flatters woundcare."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from bench.load_servers import start_bare


async def test_an_upload_is_read_to_its_last_byte_and_counted(tmp_path: Path) -> None:
    body = os.urandom(3 * 1024 * 1024 + 17)
    served = await asyncio.to_thread(start_bare, tmp_path)

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100_000):
            yield body[start:start + 100_000]

    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{served.port}/upload"
            for data in (body, chunked()):
                async with session.post(url, data=data, headers={"Content-Type": "image/jpeg"}) as response:
                    assert response.status == 201
                    assert await response.json() == {"bytes": len(body)}
    finally:
        await asyncio.to_thread(served.stop)
