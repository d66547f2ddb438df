"""Alembic environment. Migrations run through ``woundcare.db.migrate`` (which hands us a
connection), or the ``alembic`` command with ``-x url=...`` for writing new revisions."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from woundcare.db.models import Base

config = context.config


def _run(connection: Connection) -> None:
    # Batch mode lets ALTER work on SQLite too (it copies the table).
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_url(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_from_url(context.get_x_argument(as_dictionary=True)["url"]))
