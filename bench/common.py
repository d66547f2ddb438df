"""What the benches share: a free loopback port and a throwaway PostgreSQL database.

(``tests.services`` has the same for tests, but importing it pulls in pytest.)"""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def postgres_database(admin_dsn: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for a bench, dropped afterwards."""
    name = f"woundcare_bench_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(admin_dsn, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = admin_dsn.rsplit("/", 1)[0]
        yield f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
