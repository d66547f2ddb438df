"""The handler enforces the rights the application gives a socket (``Identity.may_send``),
not the role's: signaling mounted alone on a real aiohttp server, with an admission that
narrows a specialist to answering."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from signaling import handler
from signaling.admission import Identity
from signaling.limits import Limits
from signaling.protocol import Join, Role
from signaling.sink import NullSink
from tests.signaling.test_ws import RawSocket

ANSWER_ONLY = frozenset({"answer", "candidate", "end_of_candidates", "leave"})


class NarrowAdmission:
    async def admit(self, join: Join, address: str | None) -> Identity:
        if join.role is Role.SPECIALIST:
            return Identity("u2", join.role, "Dr. Narrow", "r1", ANSWER_ONLY)
        return Identity("u1", join.role, "Nurse", "r1")


@pytest.fixture
async def sockets(aiohttp_client: Any) -> Any:
    app = web.Application()
    handler.setup(app, admission=NarrowAdmission(), sink=NullSink(), limits=Limits())
    client = await aiohttp_client(app)

    async def open_socket() -> RawSocket:
        return RawSocket(await client.ws_connect("/ws"))

    return open_socket


async def test_a_kind_outside_the_sockets_rights_is_forbidden(sockets: Any) -> None:
    nurse, specialist = await sockets(), await sockets()
    joined = await nurse.join("c1", Role.NURSE, "t")
    assert (await specialist.join("c1", Role.SPECIALIST, "t"))["type"] == "joined"
    assert (await nurse.expect("presence"))["state"] == "joined"
    for kind, fields in (("chat", {"text": "hi"}), ("snapshot_request", {"id": "s1"})):
        await specialist.send(type=kind, **fields)
        error = await specialist.expect("error")
        assert (error["code"], error["ref"]) == ("forbidden", kind)
    await specialist.send(type="answer", to=joined["you"]["id"], sdp="v=0")
    assert (await nurse.expect("answer"))["sdp"] == "v=0"
    await nurse.send(type="chat", text="the nurse keeps her role's rights")
    assert (await specialist.expect("chat"))["text"] == "the nurse keeps her role's rights"
