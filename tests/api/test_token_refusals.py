"""Refused bearer tokens through the real API: each is a security event in the audit chain (by
a fixed reason, never the token), answered with its code and an RFC 6750 challenge, and a
flood of them from one address is cut off before the audit log, as wrong passwords are."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from sqlalchemy import select

from signaling.protocol import Role
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.auth.invitations import Invitations
from woundcare.db.models import AuditEvent, StaffRole

Start = Callable[..., Awaitable[RunningServer]]
Make = Callable[[RunningServer], Awaitable[str]]


async def forged(server: RunningServer) -> str:
    consultation = await server.new_consultation()
    return Invitations(b"not the server's key", 3600).issue(consultation, Role.SPECIALIST, "u1", "Mallory", "test")


async def expired(server: RunningServer) -> str:
    return server.invite(await server.new_consultation(), Role.NURSE, ttl=-60)


async def malformed(server: RunningServer) -> str:
    return "wc1.bm90IGEgdG9rZW4"


async def unknown_device(server: RunningServer) -> str:
    return "wcd_" + "A" * 43


async def revoked_device(server: RunningServer) -> str:
    user_id = await server.add_user("nurse1", "correct horse battery staple", {"east": StaffRole.NURSE})
    device_id, token = await server.app[SERVICES].devices.issue(user_id, await server.region("east"), "cam")
    assert await server.app[SERVICES].devices.revoke(device_id)
    return token


REFUSED: dict[str, tuple[Make, str, str]] = {
    "forged invitation": (forged, "token_invalid", "bad_signature"),
    "expired invitation": (expired, "token_expired", "expired"),
    "malformed invitation": (malformed, "token_invalid", "malformed"),
    "unknown device": (unknown_device, "token_invalid", "device_unknown"),
    "revoked device": (revoked_device, "token_invalid", "device_unknown"),
}


async def get_session(server: RunningServer, token: str) -> tuple[int, str, str | None]:
    async with aiohttp.ClientSession() as http:
        response = await http.get(server.url + "/api/session", headers={"Authorization": f"Bearer {token}"})
        body = await response.json()
        return response.status, body["error"]["code"] if "error" in body else "", response.headers.get(
            "WWW-Authenticate"
        )


async def token_audit(server: RunningServer) -> list[AuditEvent]:
    async with server.app[SERVICES].database.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.action.like("%.token")).order_by(AuditEvent.seq)
        return list((await session.scalars(query)).all())


@pytest.mark.parametrize("make, code, reason", REFUSED.values(), ids=REFUSED.keys())
async def test_a_refused_bearer_token_is_audited_by_its_reason_without_the_token(
    start_server: Start, migrated_db_url: str, make: Make, code: str, reason: str
) -> None:
    server = await start_server(database_url=migrated_db_url)
    token = await make(server)
    assert await get_session(server, token) == (401, code, 'Bearer error="invalid_token"')
    [entry] = await token_audit(server)
    assert (entry.action, entry.outcome, entry.resource, entry.actor) == (
        "session.read.token", "denied", f"token:{reason}", None,
    )
    assert entry.address == "127.0.0.1"
    stored = " ".join(str(getattr(entry, column.key)) for column in AuditEvent.__table__.columns)
    assert token not in stored and token[4:20] not in stored


async def test_a_flood_of_bad_tokens_is_throttled_before_the_audit_log(
    start_server: Start, migrated_db_url: str
) -> None:
    server = await start_server(database_url=migrated_db_url, address_failure_limit=3)
    token = await forged(server)
    answers = Counter([(await get_session(server, token))[:2] for _ in range(8)])
    assert answers == {(401, "token_invalid"): 3, (429, "throttled"): 5}, answers
    assert len(await token_audit(server)) == 3
    # Good tokens from the same address still pass: only refusals are counted.
    good = server.invite(await server.new_consultation(), Role.NURSE)
    async with aiohttp.ClientSession() as http:
        response = await http.get(server.url + "/api/ice-servers", headers={"Authorization": f"Bearer {good}"})
        assert response.status == 200

