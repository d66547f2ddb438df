from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.server import RunningServer
from tests.services import free_port, postgres_database
from woundcare.config import Settings


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database on SQLite and on the machine's real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'woundcare.db'}"
        return
    async for url in postgres_database():
        yield url


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice offers no loopback host candidate; tests must stay on loopback."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[RunningServer]]]:
    """Start the real app on a free loopback port; settings can be overridden per test."""
    servers: list[RunningServer] = []

    async def start(**overrides: Any) -> RunningServer:
        overrides.setdefault("data_dir", tmp_path / f"server{len(servers)}")
        # Tests make their own regions; the demo's Argon2 hashing only slows them down.
        overrides.setdefault("demo", False)
        running = await RunningServer.start(Settings(port=free_port(), **overrides))
        servers.append(running)
        return running

    yield start
    for running in reversed(servers):
        await running.stop()


@pytest.fixture
async def server(start_server: Callable[..., Awaitable[RunningServer]]) -> RunningServer:
    return await start_server()
