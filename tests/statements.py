"""The SQL a block of a test sends to a database, as the driver is given it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from woundcare.db.database import Database


@contextmanager
def statements(database: Database) -> Iterator[list[str]]:
    """Every statement sent to ``database`` (each of its engines, the SQLite writer's too) while
    the block runs, whitespace folded and lower-cased, in order."""
    seen: list[str] = []

    def executing(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        seen.append(" ".join(sql.split()).lower())

    engines = database.engines
    for engine in engines:
        event.listen(engine, "before_cursor_execute", executing)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", executing)
