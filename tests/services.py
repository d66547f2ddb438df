"""Real services the tests use, and the rule for when one is missing:
skip with the reason on a developer machine, fail in CI (``CI=true``)."""

from __future__ import annotations

import os
import secrets
import string
import socket
from collections.abc import AsyncIterator
from typing import NoReturn

import pytest

POSTGRES_ADMIN_DSN = os.environ.get("WOUNDCARE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("WOUNDCARE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def database_suffix() -> str:
    """A random suffix for a test database's name, in letters only: a hex one held eleven
    digits in a row now and then, which the log check (tests/conftest.py) reads as a national
    id when a server's error names its database."""
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(12))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(reason: str) -> NoReturn:
    """A needed part is absent: a failure in CI, a skip elsewhere."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_url(name: str) -> str:
    """The SQLAlchemy URL of database ``name`` on the test server."""
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"


async def postgres_database(template: str | None = None) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test, empty or a copy of ``template``; dropped afterwards."""
    import asyncpg

    name = f"woundcare_t_{database_suffix()}"
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        missing(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_DSN}: {exc}")
    try:
        copy = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{copy}')
        yield postgres_url(name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
