"""The recorder role on the real /ws: seen as a recorder, silent but for answers and candidates."""

from __future__ import annotations

from typing import Any

from signaling.protocol import Role
from tests.server import RunningServer
from tests.signaling.test_ws import connect, joined_pair  # noqa: F401  (connect is a fixture)


async def test_the_recorder_is_announced_as_such_and_may_only_answer(server: RunningServer, connect: Any) -> None:  # noqa: F811
    consultation, nurse, specialist = await joined_pair(server, connect)
    recorder = await connect()
    joined = await recorder.join(consultation, Role.RECORDER, server.invite(consultation, Role.RECORDER, name="Opptak"))
    assert joined["type"] == "joined" and joined["you"]["role"] == "recorder"
    for viewer in (nurse, specialist):
        presence = await viewer.expect("presence")
        assert (presence["state"], presence["participant"]["role"]) == ("joined", "recorder")
    nurse_id = next(p["id"] for p in joined["peers"] if p["role"] == "nurse")

    for refused in ({"type": "chat", "text": "hello"}, {"type": "snapshot_request", "id": "r1"},
                    {"type": "offer", "to": nurse_id, "sdp": "v=0"}):
        await recorder.send(**refused)
        error = await recorder.expect("error")
        assert (error["code"], error["ref"]) == ("forbidden", refused["type"])
    assert await nurse.silent() and await specialist.silent()

    await recorder.send(type="answer", to=nurse_id, sdp="v=0", pc=0)
    answer = await nurse.expect("answer")
    assert answer["from"] == joined["you"]["id"]
    assert await specialist.silent()


async def test_a_viewer_token_does_not_make_a_recorder(server: RunningServer, connect: Any) -> None:  # noqa: F811
    consultation = await server.new_consultation()
    ws = await connect()
    error = await ws.join(consultation, Role.RECORDER, server.invite(consultation, Role.SPECIALIST))
    assert (error["type"], error["code"]) == ("error", "forbidden")
