"""``woundcare webhooks add|list|test|remove``, run as the admin runs them (a process each)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests import migrated
from tests.e2e.process import child_environ, woundcare_cli
from tests.services import free_port
from tests.webhooks.receiver import Receiver
from woundcare.db.engine import make_engine
from woundcare.db.models import AuditEvent, WebhookEndpoint


@pytest.fixture
async def admin(tmp_path: Path, sqlite_template: Path) -> dict[str, str]:
    migrated.copy_sqlite(sqlite_template, tmp_path / migrated.SQLITE_NAME)
    environ = child_environ({"WOUNDCARE_DATA_DIR": str(tmp_path)})
    await woundcare_cli("region", "add", "east", "East", environ=environ)
    return environ


async def _rows(tmp_path: Path, statement: Any) -> list[Any]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / migrated.SQLITE_NAME}")
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(statement)).all())
    finally:
        await engine.dispose()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


async def test_add_list_test_remove(admin: dict[str, str], receiver: Receiver, tmp_path: Path) -> None:
    added = await woundcare_cli("webhooks", "add", receiver.url, "--events", "consultation.queued",
                                "econsult.asked", "--region", "east", environ=admin)
    match = re.search(r"endpoint (\d+) added: .*\nsecret \(shown once\): (whsec_\S+)", added)
    assert match, added
    endpoint, receiver.secret = match.group(1), match.group(2)

    listed = await woundcare_cli("webhooks", "list", environ=admin)
    assert f"{endpoint}  {receiver.url} (consultation.queued econsult.asked; region east)" in listed
    assert receiver.secret not in listed
    ((sealed,),) = await _rows(tmp_path, select(WebhookEndpoint.secret_sealed))
    assert sealed is not None and receiver.secret.encode() not in sealed and receiver.secret[6:].encode() not in sealed

    tested = await woundcare_cli("webhooks", "test", endpoint, environ=admin)
    assert f"endpoint {endpoint} answered 204: delivered" in tested
    (test,) = receiver.received
    assert test.verified and test.payload["type"] == "webhook.test" and test.payload["data"] == {}

    await receiver.stop()
    with pytest.raises(AssertionError, match="exited with 1") as failed:
        await woundcare_cli("webhooks", "test", endpoint, environ=admin)
    assert "did not take the test event: connection" in str(failed.value)

    assert "removed" in await woundcare_cli("webhooks", "remove", endpoint, environ=admin)
    assert await woundcare_cli("webhooks", "list", environ=admin) == ""
    with pytest.raises(AssertionError, match="exited with 2") as gone:
        await woundcare_cli("webhooks", "remove", endpoint, environ=admin)
    assert "no such webhook endpoint" in str(gone.value)

    audited = await _rows(tmp_path, select(AuditEvent.action, AuditEvent.resource, AuditEvent.actor)
                          .where(AuditEvent.action.like("admin.webhook.%")).order_by(AuditEvent.seq))
    resource = f"webhook:{endpoint}"
    assert [tuple(row) for row in audited] == [
        (f"admin.webhook.{action}", resource, "cli") for action in ("add", "test", "test", "remove")
    ]


async def test_a_url_with_credentials_is_refused_without_echoing_it(admin: dict[str, str]) -> None:
    with pytest.raises(AssertionError, match="exited with 2") as refused:
        await woundcare_cli("webhooks", "add", f"https://user:hunter2@127.0.0.1:{free_port()}/", environ=admin)
    assert "a webhook URL carries no user name or password" in str(refused.value)
    assert "hunter2" not in str(refused.value)
