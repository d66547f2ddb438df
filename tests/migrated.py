"""Databases already at the newest migration, for tests that do not test migrating.

Migrating an empty database runs every Alembic revision: a quarter of a second on SQLite and
seconds of DDL on PostgreSQL, once per test and per server start before. Each pytest process
now migrates one template of each kind once and hands out copies: a file copy on SQLite,
``CREATE DATABASE ... TEMPLATE`` on PostgreSQL. A copy holds exactly what the app's own
start-up migration would have made, and the app still runs ``upgrade`` when it starts (a no-op
at head), so the start-up path is the same. Migrating from empty is tested on both databases
by ``tests/db/test_migrations.py`` (through ``db_url``, which stays empty).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from tests.services import POSTGRES_ADMIN_DSN, database_suffix, missing, postgres_url
from woundcare.db.engine import make_engine
from woundcare.db.migrate import upgrade

T = TypeVar("T")
SQLITE_NAME = "woundcare.db"
"""The file name ``Settings.db_url`` gives a data folder's database."""


def run_apart(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to the end on a thread of its own: a session fixture may be first asked
    for from inside a running event loop (an async fixture's), where ``asyncio.run`` refuses."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()  # type: ignore[arg-type]


async def migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        # Closing SQLite's last connection checkpoints its WAL into the file: one file to copy.
        await engine.dispose()


def sqlite_template(folder: Path) -> Path:
    """A SQLite file at head, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SQLITE_NAME
    run_apart(lambda: migrate(f"sqlite+aiosqlite:///{path}"))
    return path


def copy_sqlite(template: Path, database: Path) -> None:
    """``template`` (with a WAL file, should one be left) as ``database``; never over a database."""
    if database.exists():
        raise FileExistsError(database)
    database.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal"):
        source = template.with_name(template.name + suffix)
        if source.exists():
            shutil.copyfile(source, database.with_name(database.name + suffix))


def postgres_template() -> str:
    """The name of a new PostgreSQL database at head, with no connection left open to it
    (``CREATE DATABASE ... TEMPLATE`` refuses a template someone is connected to)."""
    import asyncpg

    name = f"woundcare_tpl_{database_suffix()}"

    async def make() -> None:
        try:
            admin = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
        except (OSError, asyncpg.PostgresError) as exc:
            missing(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_DSN}: {exc}")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        await migrate(postgres_url(name))

    run_apart(make)
    return name


def drop_postgres(name: str) -> None:
    import asyncpg

    async def drop() -> None:
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    run_apart(drop)
