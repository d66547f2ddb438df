"""Everyone in the call is told that it is recorded (protocol §7.6): a ``recording`` frame
when a recording starts and when it ends, on every instance, and at once to whoever joins
while one is on. Real server(s), real /ws clients, the recording started and stopped over HTTP."""

from __future__ import annotations

from typing import Any

from signaling.protocol import Role
from tests.recording.test_uploads import consenting
from tests.server import RunningServer
from tests.signaling.test_bus import cluster, sockets  # noqa: F401  (fixtures)
from tests.signaling.test_ws import RawSocket


async def joined(socket: RawSocket, server: RunningServer, consultation: str, role: Role) -> dict[str, Any]:
    frame = await socket.join(consultation, role, server.invite(consultation, role, region="east"))
    assert frame["type"] == "joined", frame
    return frame


async def told_of_recordings(here: RunningServer, there: RunningServer, open_on: Any) -> None:
    """The nurse on ``here``, the specialist (and the HTTP calls) on ``there``."""
    consultation, spes, _other = await consenting(there)
    try:
        nurse, specialist = await open_on(here), await open_on(there)
        await joined(nurse, here, consultation, Role.NURSE)
        await joined(specialist, there, consultation, Role.SPECIALIST)
        await nurse.expect("presence")
        # Nothing is said of a recording before one starts.
        assert await nurse.silent() and await specialist.silent()

        started = await spes.json("POST", f"/api/consultations/{consultation}/recordings", expect=201)
        for ws in (nurse, specialist):
            assert await ws.expect("recording") == {"type": "recording", "state": "on"}

        # A guest who joins mid-recording learns it right after its joined.
        observer = await open_on(here)
        await joined(observer, here, consultation, Role.OBSERVER)
        assert await observer.expect("recording") == {"type": "recording", "state": "on"}
        for ws in (nurse, specialist):
            await ws.expect("presence")

        # Stopped with nothing uploaded: it fails, and still ends for everyone.
        stopped = await spes.json("POST", f"/api/recordings/{started['id']}/stop")
        assert stopped["status"] == "failed"
        for ws in (nurse, specialist, observer):
            assert await ws.expect("recording") == {"type": "recording", "state": "off"}

        # Once it is over, a newcomer hears nothing of it.
        late = await open_on(there)
        await joined(late, there, consultation, Role.SPECIALIST)
        assert await late.silent()
    finally:
        await spes.close()
        await _other.close()


async def test_a_recording_is_told_to_the_room_and_to_whoever_joins_during_it(
    start_server: Any, sockets: Any  # noqa: F811
) -> None:
    server = await start_server()
    await told_of_recordings(server, server, sockets)


async def test_a_recording_is_told_on_every_instance(cluster: Any, sockets: Any) -> None:  # noqa: F811
    await told_of_recordings(await cluster(), await cluster(), sockets)
