"""Finished recordings leave nothing behind in the server: 30 recordings made and finished
through ``woundcare serve`` in its own process, its resident memory read from /proc before
and after (the remuxing happens in a worker process, which is replaced now and then)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.api.client import ApiClient
from tests.e2e.process import ServerProcess, child_environ, woundcare_cli
from tests.recording.media import PIECE, webm_part
from tests.services import free_port

PASSWORD = "memory test password"
WARM_UP = 5
RECORDINGS = 30


def resident_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


async def record(spes: ApiClient, consultation: str, media: bytes) -> None:
    started = await spes.json("POST", f"/api/consultations/{consultation}/recordings", expect=201)
    part = (await spes.json("POST", f"/api/recordings/{started['id']}/parts", expect=201))["part"]
    for n, at in enumerate(range(0, len(media), PIECE * 8)):
        response = await spes.request("POST", f"/api/recordings/{started['id']}/pieces?part={part}&n={n}",
                                      data=media[at : at + PIECE * 8])
        assert response.status == 204
    stopped = await spes.json("POST", f"/api/recordings/{started['id']}/stop")
    assert stopped["status"] == "complete" and stopped["frames"] == 60


@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)  # the pilot's database; once is enough
async def test_thirty_finished_recordings_give_their_memory_back(tmp_path: Path, migrated_db_url: str) -> None:
    server = ServerProcess(data_dir=tmp_path / "data", database_url=migrated_db_url,
                           instance=f"memory-{secrets.token_hex(4)}", port=free_port(), log_path=tmp_path / "server.log")
    admin = child_environ({"WOUNDCARE_DATA_DIR": str(server.data_dir), "WOUNDCARE_DATABASE_URL": migrated_db_url,
                           "WOUNDCARE_NEW_PASSWORD": PASSWORD})
    await woundcare_cli("region", "add", "east", "East", environ=admin)
    for name, role in (("nurse", "nurse"), ("spes", "specialist")):
        await woundcare_cli("user", "add", name, "--name", name, "--role", role, "--region", "east", environ=admin)
    await server.start()
    nurse, spes = ApiClient(server.url), ApiClient(server.url)
    try:
        for client, name in ((nurse, "nurse"), (spes, "spes")):
            assert (await client.login(name, PASSWORD)).status == 200
        patient = await nurse.json("POST", "/api/patients", expect=201,
                                   json={"region": "east", "nationalId": "01018012371", "name": "Kari Øst"})
        consultation = (await nurse.json("POST", "/api/consultations", expect=201, json={"patient": patient["id"]}))["id"]
        await nurse.json("POST", f"/api/consultations/{consultation}/consents", expect=201,
                         json={"video": True, "recording": True})
        media = webm_part(60, (640, 480), noise=True)  # ~2 s, several hundred KiB
        for _ in range(WARM_UP):
            await record(spes, consultation, media)
        before = resident_kib(server.pid)
        for _ in range(RECORDINGS):
            await record(spes, consultation, media)
        after = resident_kib(server.pid)
        print(f"server VmRSS {before} KiB -> {after} KiB over {RECORDINGS} recordings")
        listed = (await spes.json("GET", f"/api/consultations/{consultation}/recordings"))["recordings"]
        assert len(listed) == WARM_UP + RECORDINGS
        assert after <= before * 1.10, f"resident memory grew from {before} KiB to {after} KiB over {RECORDINGS} recordings"
    finally:
        await nurse.close()
        await spes.close()
        await server.kill()
