"""A signed assessment cannot change (issue 15, finding 3): saves racing a signing, and stale
editors, through the real API on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.api.client import ApiClient
from tests.server import RunningServer
from woundcare.db.models import StaffRole

PASSWORD = "assessment race password"
SAVES = 24
ROUNDS = 3


@pytest.fixture
async def clinic(start_server: Any, migrated_db_url: str) -> AsyncIterator[tuple[RunningServer, ApiClient]]:
    server = await start_server(database_url=migrated_db_url)
    await server.add_user("spes", PASSWORD, {"east": StaffRole.SPECIALIST})
    specialist = ApiClient(server.url)
    await specialist.login("spes", PASSWORD)
    yield server, specialist
    await specialist.close()


async def _assessment(server: RunningServer) -> str:
    return f"/api/consultations/{await server.new_consultation('east')}/assessment"


def _draft(n: int) -> dict[str, Any]:
    return {"outcome": "treated_at_home", "treatmentPlan": f"plan {n}"}


async def test_saves_racing_a_signing_never_change_what_was_signed(
    clinic: tuple[RunningServer, ApiClient],
) -> None:
    """Many saves in flight while the draft is signed: the signed content is the one kept.
    Every save either lands before the signing (and the signing shows it or a later one) or
    is refused as signed (409); none lands after. Several rounds, as a race is a matter of luck."""
    server, specialist = clinic
    for round_ in range(ROUNDS):
        path = await _assessment(server)
        await specialist.json("PUT", path, json=_draft(0))

        async def save(n: int) -> int:
            await asyncio.sleep(0.001 * (n % 5))
            return (await specialist.request("PUT", path, json=_draft(n))).status

        async def sign() -> dict[str, Any]:
            await asyncio.sleep(0.002)
            return await specialist.json("POST", f"{path}/sign")  # type: ignore[no-any-return]

        *statuses, signed = await asyncio.gather(*(save(n) for n in range(1, SAVES + 1)), sign())
        assert set(statuses) <= {200, 409}, statuses
        kept = await specialist.json("GET", path)
        assert kept["signedAt"] == signed["signedAt"] is not None
        assert kept["treatmentPlan"] == signed["treatmentPlan"], (round_, kept, signed)
        assert (await specialist.request("PUT", path, json=_draft(99))).status == 409


async def test_a_stale_editor_gets_412_and_signs_only_what_they_saw(
    clinic: tuple[RunningServer, ApiClient],
) -> None:
    server, specialist = clinic
    path = await _assessment(server)
    first = await specialist.request("PUT", path, json=_draft(1))
    assert first.status == 200
    seen = first.headers["ETag"]
    read = await specialist.request("GET", path)
    assert read.headers["ETag"] == seen and read.headers["Cache-Control"] == "no-store"

    # Another tab saves over it; this editor still holds the old tag.
    newer = await specialist.request("PUT", path, json=_draft(2), headers={"If-Match": seen})
    assert newer.status == 200 and newer.headers["ETag"] != seen
    stale = await specialist.json("PUT", path, expect=412, json=_draft(3), headers={"If-Match": seen})
    assert stale["error"]["code"] == "precondition_failed"
    stale = await specialist.json("POST", f"{path}/sign", expect=412, headers={"If-Match": seen})
    assert stale["error"]["code"] == "precondition_failed"
    assert (await specialist.json("GET", path))["treatmentPlan"] == "plan 2"
    for tag in ('W/' + newer.headers["ETag"], '"not-a-version"'):
        await specialist.json("PUT", path, expect=412, json=_draft(4), headers={"If-Match": tag})

    signed = await specialist.request("POST", f"{path}/sign", headers={"If-Match": newer.headers["ETag"]})
    assert signed.status == 200 and (await signed.json())["treatmentPlan"] == "plan 2"
    after = await specialist.json("PUT", path, expect=409, json=_draft(5), headers={"If-Match": signed.headers["ETag"]})
    assert after["error"]["code"] == "signed"
    # A first save with a tag has nothing to match.
    fresh = await _assessment(server)
    await specialist.json("PUT", fresh, expect=412, json=_draft(1), headers={"If-Match": '"1"'})
