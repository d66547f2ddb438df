"""A `woundcare serve` process with one region, a nurse and a specialist made through the CLI,
for the tests that SIGKILL it and start it again (`test_crash`, `test_recording_crash`)."""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.api.client import ApiClient
from tests.e2e.process import ServerProcess, child_environ, woundcare_cli
from tests.services import free_port

PASSWORD = "crash test password"


async def ward_process(tmp_path: Path, database_url: str, name: str) -> ServerProcess:
    """The server (not started) on a free port, its data in ``tmp_path``, users ``nurse`` and
    ``spes`` in region ``east``."""
    server = ServerProcess(
        data_dir=tmp_path / "data",
        database_url=database_url,
        instance=f"{name}-{secrets.token_hex(4)}",
        port=free_port(),
        log_path=tmp_path / "server.log",
    )
    admin = child_environ(
        {"WOUNDCARE_DATA_DIR": str(server.data_dir), "WOUNDCARE_DATABASE_URL": database_url,
         "WOUNDCARE_NEW_PASSWORD": PASSWORD}
    )
    await woundcare_cli("region", "add", "east", "East", environ=admin)
    await woundcare_cli("user", "add", "nurse", "--name", "Nurse", "--role", "nurse", "--region", "east",
                        environ=admin)
    await woundcare_cli("user", "add", "spes", "--name", "Specialist", "--role", "specialist",
                        "--region", "east", environ=admin)
    return server


async def logged_in(server: ServerProcess, username: str) -> ApiClient:
    client = ApiClient(server.url)
    response = await client.login(username, PASSWORD)
    assert response.status == 200, (response.status, await response.text())
    return client


async def consented_consultation(nurse: ApiClient, *, recording: bool = False) -> str:
    """A new patient's consultation, consented to video and photos (and recording if asked)."""
    patient = await nurse.json("POST", "/api/patients", expect=201,
                               json={"region": "east", "nationalId": "01018012371", "name": "Kari Øst"})
    consultation = await nurse.json("POST", "/api/consultations", expect=201, json={"patient": patient["id"]})
    consents = {"video": True, "snapshots": True} | ({"recording": True} if recording else {})
    await nurse.json("POST", f"/api/consultations/{consultation['id']}/consents", expect=201, json=consents)
    return str(consultation["id"])
