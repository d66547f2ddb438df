"""Migrations own the schema: from empty to head they build exactly what the models say."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from woundcare.db.engine import make_engine
from woundcare.db.migrate import upgrade
from woundcare.db.models import Base


def _diff(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


async def test_upgrade_from_empty_matches_the_models_and_is_idempotent(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        await upgrade(engine)
        await upgrade(engine)  # a second start finds nothing to do
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert {"alembic_version", "patients", "snapshots", "assessments", "consents"} <= tables
    finally:
        await engine.dispose()
