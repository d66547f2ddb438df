from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from tests import migrated
from tests.server import RunningServer
from tests.services import REDIS_URL, free_port, missing, postgres_database
from woundcare.auth import passwords
from woundcare.config import Settings


# `make test` runs pytest-xdist workers (--dist loadgroup), which take tests in collection order.
# The longest go first, so that no long browser test starts last and runs alone at the end.
_LONGEST_FIRST = ("tests/bench/", "tests/e2e/", "tests/camera/", "tests/recording/", "tests/fuzz/")
_BENCH = pytest.mark.xdist_group("bench")
"""Bench smoke runs time their joins: never two at once."""
_IMPORTS = pytest.mark.xdist_group("imports")
"""tests/test_imports.py imports every module in a subprocess once per worker (cached): on one
worker that costs one run of it instead of one on each (15 s of CPU each)."""


@pytest.hookimpl(wrapper=True)  # around xdist's hook, which names the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Iterator[None]:
    def rank(item: pytest.Item) -> int:
        folders = (i for i, folder in enumerate(_LONGEST_FIRST) if item.nodeid.startswith(folder))
        return next(folders, len(_LONGEST_FIRST))

    items.sort(key=rank)
    for item in items:
        if item.nodeid.startswith("tests/bench/"):
            item.add_marker(_BENCH)
        elif item.nodeid.startswith("tests/test_imports.py"):
            item.add_marker(_IMPORTS)
    result = yield
    _keep_xdist_groups(items)
    return result


def _keep_xdist_groups(items: list[pytest.Item]) -> None:
    """``--dist loadgroup`` puts a test's group in its node id ("...@bench"), where the
    scheduler reads it. pytest 9.2 keeps node ids as structured ``NodeId``s, so pytest-xdist
    3.8 writes the suffixed id to the old ``_nodeid`` attribute to no effect and every group
    is spread over all workers, silently (pytest-xdist#1386; the fix, #1388, is not released).
    Carry the suffixed id into the node's id as xdist meant; a no-op where xdist's write works."""
    for item in items:
        wanted = vars(item).get("_nodeid")
        if isinstance(wanted, str) and wanted != item.nodeid and hasattr(item, "_id"):
            from _pytest.nodeid import NodeId

            item._id = NodeId.parse(wanted)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database on SQLite and on the machine's real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'woundcare.db'}"
        return
    async for url in postgres_database():
        yield url


PRODUCTION_HASHER = passwords._hasher
"""The server's Argon2id hasher as shipped (RFC 9106's low-memory profile: 64 MiB, 3 passes)."""


@pytest.fixture(autouse=True, scope="session")
def cheap_password_hashes() -> Iterator[None]:
    """Argon2 at its floor in this process. At full cost each hash is about 0.2 s of CPU and
    the suite made hundreds (every app start hashes a dummy password, every ``add_user`` and
    login one more): a tenth of CI's CPU on two cores. Each hash carries its own parameters, so
    hashes made here verify anywhere; no test measures the hashing cost, and
    tests/auth/test_passwords.py checks the shipped parameters on :data:`PRODUCTION_HASHER`.
    Servers run as child processes (tests/e2e/process.py) hash at full cost."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        yield


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the newest migration, made once per pytest process (tests/migrated.py)."""
    return migrated.sqlite_template(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A PostgreSQL database at the newest migration, made once per pytest process and dropped
    at its end; only ever copied, never connected to."""
    name = migrated.postgres_template()
    yield name
    migrated.drop_postgres(name)


@pytest.fixture(params=["sqlite", "postgresql"])
async def migrated_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """As ``db_url``, but already at the newest migration: a copy of a template, for tests of
    anything but migrating (the app's start-up ``upgrade`` then finds nothing to do)."""
    if request.param == "sqlite":
        database = tmp_path / migrated.SQLITE_NAME
        migrated.copy_sqlite(request.getfixturevalue("sqlite_template"), database)
        yield f"sqlite+aiosqlite:///{database}"
        return
    async for url in postgres_database(template=request.getfixturevalue("postgres_template")):
        yield url


@pytest.fixture
async def migrated_database_url(postgres_template: str) -> AsyncIterator[str]:
    """As ``database_url`` (a fresh PostgreSQL database), already at the newest migration."""
    async for url in postgres_database(template=postgres_template):
        yield url


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice offers no loopback host candidate; tests must stay on loopback."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
async def start_server(
    tmp_path: Path, sqlite_template: Path
) -> AsyncIterator[Callable[..., Awaitable[RunningServer]]]:
    """Start the real app on a free loopback port; settings can be overridden per test.
    A server in a data folder of the fixture's own making starts on a copy of the migrated
    SQLite template; one given its own ``data_dir`` or ``database_url`` starts on that."""
    servers: list[RunningServer] = []

    async def start(**overrides: Any) -> RunningServer:
        if "data_dir" not in overrides:
            overrides["data_dir"] = tmp_path / f"server{len(servers)}"
            database = overrides["data_dir"] / migrated.SQLITE_NAME
            if "database_url" not in overrides and not database.exists():
                migrated.copy_sqlite(sqlite_template, database)
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
    r"wcs_[A-Za-z0-9_-]{8}|wcd_[A-Za-z0-9_-]{8}|wcgc?_[A-Za-z0-9_-]{8}|wc1\.[A-Za-z0-9_-]{8}|(?<!\d)\d{11}(?!\d)"
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
