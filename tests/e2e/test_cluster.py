"""Two real server processes on one PostgreSQL and one Redis: the nurse's camera on
instance A, the specialist on instance B, video between them. A is killed (SIGKILL) in
the middle of the call; the camera resumes on B inside the grace window, media recovers
on a fresh peer connection, and the consultation's record is whole."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from signaling.protocol import Role
from tests.e2e.process import ServerProcess, child_environ, woundcare_cli
from tests.e2e.ward import PASSWORD, consented_consultation, logged_in
from tests.services import REDIS_URL, free_port
from woundcare.webrtc.client import SignalingClient
from woundcare.camera.peer import Publisher
from woundcare.webrtc.peer import Viewer, ice_configuration, pump, shutdown
from woundcare.camera.synthetic import SyntheticVideoTrack
from woundcare.db.engine import make_engine
from woundcare.db.models import Consultation, ConsultationEvent, ConsultationStatus

pytestmark = pytest.mark.usefixtures("loopback_ice")

GRACE_SECONDS = 30.0
INSTANCE_TTL_SECONDS = 2.0
"""A dead instance is noticed within about this long (plus a third of it)."""


class ClusterProcess(ServerProcess):
    """A ``woundcare serve`` child that shares rooms through Redis."""

    def __init__(self, *, redis_prefix: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.redis_prefix = redis_prefix

    def environ(self) -> dict[str, str]:
        environ = super().environ()
        environ.update(
            {
                "WOUNDCARE_REDIS_URL": REDIS_URL,
                "WOUNDCARE_REDIS_PREFIX": self.redis_prefix,
                "WOUNDCARE_INSTANCE_TTL_SECONDS": str(INSTANCE_TTL_SECONDS),
                "WOUNDCARE_GRACE_SECONDS": str(GRACE_SECONDS),
            }
        )
        return environ


@pytest.fixture
async def instances(database_url: str, redis_prefix: str, tmp_path: Path) -> AsyncIterator[list[ClusterProcess]]:
    """Two instances (not started) sharing the data folder (secret, master key), the
    database and Redis; both are killed at teardown whatever happened."""
    data_dir = tmp_path / "data"
    servers = [
        ClusterProcess(
            redis_prefix=redis_prefix,
            data_dir=data_dir,
            database_url=database_url,
            instance=f"cluster-{name}-{secrets.token_hex(3)}",
            port=free_port(),
            log_path=tmp_path / f"server-{name}.log",
        )
        for name in ("a", "b")
    ]
    admin = child_environ(
        {"WOUNDCARE_DATA_DIR": str(data_dir), "WOUNDCARE_DATABASE_URL": database_url,
         "WOUNDCARE_NEW_PASSWORD": PASSWORD}
    )
    await woundcare_cli("region", "add", "east", "East", environ=admin)
    await woundcare_cli("user", "add", "nurse", "--name", "Nurse", "--role", "nurse", "--region", "east",
                        environ=admin)
    try:
        yield servers
    finally:
        for server in servers:
            await server.kill()


async def invite(server: ServerProcess, consultation: str, role: Role) -> str:
    environ = child_environ(
        {"WOUNDCARE_DATA_DIR": str(server.data_dir), "WOUNDCARE_DATABASE_URL": server.database_url}
    )
    return (await woundcare_cli("invite", consultation, "--role", role.value, environ=environ)).strip().splitlines()[-1]


async def next_of(inbox: asyncio.Queue[dict[str, Any]], kind: str, timeout: float) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame = await inbox.get()
            if frame["type"] == kind:
                return frame


async def stored_events(database_url: str, consultation: str) -> tuple[ConsultationStatus, list[tuple[str, str | None, str | None]]]:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as connection:
            status = await connection.scalar(select(Consultation.status).where(Consultation.id == consultation))
            rows = (
                await connection.execute(
                    select(ConsultationEvent.kind, ConsultationEvent.role, ConsultationEvent.participant)
                    .where(ConsultationEvent.consultation_id == consultation)
                    .order_by(ConsultationEvent.at, ConsultationEvent.id)
                )
            ).all()
    finally:
        await engine.dispose()
    return status, [(r.kind, r.role, r.participant) for r in rows]


async def wait_for_events(database_url: str, consultation: str, wanted: list[tuple[str, str]],
                          timeout: float = 10.0) -> tuple[ConsultationStatus, list[tuple[str, str | None, str | None]]]:
    """Until every (kind, participant) in ``wanted`` is stored; the session log writes in the background."""
    deadline = time.monotonic() + timeout
    while True:
        status, events = await stored_events(database_url, consultation)
        have = {(kind, participant) for kind, _, participant in events}
        if all(w in have for w in wanted) or time.monotonic() > deadline:
            return status, events
        await asyncio.sleep(0.2)


async def test_camera_resumes_on_another_instance_after_a_sigkill(
    instances: list[ClusterProcess], database_url: str
) -> None:
    a, b = instances
    await a.start()
    await b.start()
    nurse_api = await logged_in(a, "nurse")
    try:
        consultation = await consented_consultation(nurse_api)
    finally:
        await nurse_api.close()
    nurse_token = await invite(a, consultation, Role.NURSE)
    specialist_token = await invite(b, consultation, Role.SPECIALIST)

    config = ice_configuration([])
    nurse_client, specialist_client = SignalingClient(a.url), SignalingClient(b.url)
    camera = Publisher(nurse_client, SyntheticVideoTrack(320, 240), config)
    viewer = Viewer(specialist_client, config)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    tasks: list[asyncio.Task[None]] = []
    try:
        await nurse_client.join(consultation, Role.NURSE, nurse_token)
        tasks.append(asyncio.create_task(pump(nurse_client, camera)))
        joined = await specialist_client.join(consultation, Role.SPECIALIST, specialist_token)
        assert [(p["role"], p["id"]) for p in joined["peers"]] == [("nurse", nurse_client.participant)]
        tasks.append(asyncio.create_task(pump(specialist_client, viewer, inbox)))
        async with asyncio.timeout(20):
            await viewer.frames(10)
        first_pc = viewer.pc
        nurse_id, specialist_id = nurse_client.participant, specialist_client.participant
        # What A stored before it dies is in the database (its session log writes at once).
        _, events = await wait_for_events(database_url, consultation, [("joined", nurse_id), ("joined", specialist_id)])
        assert ("joined", "nurse", nurse_id) in events, events

        assert await a.kill() == -9
        killed_at = time.monotonic()
        async with asyncio.timeout(10):
            await tasks[0]  # the camera's socket is gone
        presence = await next_of(inbox, "presence", timeout=INSTANCE_TTL_SECONDS * 4)
        assert (presence["state"], presence["participant"]["id"]) == ("reconnecting", nurse_id)
        assert presence["graceSeconds"] == GRACE_SECONDS

        resumed = await nurse_client.resume(b.url)  # a load balancer's choice in production
        assert time.monotonic() - killed_at < GRACE_SECONDS
        assert (resumed["resumed"], resumed["you"]["id"]) == (True, nurse_id)
        assert [(p["role"], p["id"], p["state"]) for p in resumed["peers"]] == [("specialist", specialist_id, "joined")]
        tasks[0] = asyncio.create_task(pump(nurse_client, camera))
        presence = await next_of(inbox, "presence", timeout=10)
        assert (presence["state"], presence["participant"]["id"]) == ("rejoined", nurse_id)

        await viewer.request_restart(nurse_id or "")
        async with asyncio.timeout(20):
            while viewer.generation != 1:
                await asyncio.sleep(0.05)
            await viewer.frames(10)
        assert viewer.pc is not first_pc
    finally:
        await shutdown(tasks, camera, viewer, nurse_client, specialist_client)

    status, events = await wait_for_events(
        database_url, consultation,
        [("reconnecting", nurse_id), ("rejoined", nurse_id), ("ice_restart", specialist_id)],
    )
    assert status is ConsultationStatus.ACTIVE
    nurse_kinds = [kind for kind, _, participant in events if participant == nurse_id]
    # Exactly one reconnecting (the sweeper on B) before the rejoin; the test's own shutdown,
    # which closes the sockets without a leave, may add another after it.
    assert nurse_kinds[:3] == ["joined", "reconnecting", "rejoined"], events
    assert nurse_kinds.count("rejoined") == 1, events
    assert ("joined", "specialist", specialist_id) in events
    assert ("ice_restart", "specialist", specialist_id) in events
    assert await b.terminate() == 0, b.output()
