from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server import RunningServer
from tests.services import REDIS_URL, free_port, missing, postgres_database
from woundcare.config import Settings


# `make test` runs pytest-xdist workers (--dist loadgroup), which take tests in collection order.
# The longest go first, so that no long browser test starts last and runs alone at the end.
_LONGEST_FIRST = ("tests/bench/", "tests/e2e/", "tests/camera/", "tests/recording/", "tests/fuzz/")
_BENCH = pytest.mark.xdist_group("bench")
"""Bench smoke runs time their joins: never two at once."""


@pytest.hookimpl(tryfirst=True)  # before xdist names the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        folders = (i for i, folder in enumerate(_LONGEST_FIRST) if item.nodeid.startswith(folder))
        return next(folders, len(_LONGEST_FIRST))

    items.sort(key=rank)
    for item in items:
        if item.nodeid.startswith("tests/bench/"):
            item.add_marker(_BENCH)


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


# What must never reach a log line: tokens by their prefixes, national id numbers,
# and the passwords the tests use.
_SECRETS = re.compile(
    r"wcs_[A-Za-z0-9_-]{8}|wcd_[A-Za-z0-9_-]{8}|wc1\.[A-Za-z0-9_-]{8}|(?<!\d)\d{11}(?!\d)"
    r"|correct horse battery staple|matrix password 1|demo-sykepleier|demo-spesialist"
)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a broken record must not hide the others
            self.lines.append(str(record.msg))


@pytest.fixture(autouse=True)
def no_secrets_in_logs() -> Iterator[None]:
    """Every test's log lines, at DEBUG for our own loggers, are checked for secrets."""
    handler = _Collect()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    ours = [logging.getLogger(name) for name in ("woundcare", "signaling", "aiohttp")]
    levels = [logger.level for logger in ours]
    root.addHandler(handler)
    for logger in ours:
        logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for logger, level in zip(ours, levels, strict=True):
            logger.setLevel(level)
    leaks = [line for line in handler.lines if _SECRETS.search(line)]
    assert not leaks, f"secrets in log lines: {leaks[:3]}"


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    client = aioredis.from_url(REDIS_URL, socket_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        missing(f"Redis is not reachable at {REDIS_URL}: {exc}")
    prefix = f"wct{secrets.token_hex(4)}"
    try:
        yield prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database (several instances must share one)."""
    async for url in postgres_database():
        yield url
