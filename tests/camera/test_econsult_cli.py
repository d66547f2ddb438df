"""``woundcare camera --econsult`` as a real subprocess against the real server: the photos
and the question reach the specialists' queue as an e-consult of the device's nurse."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.api.clinic import jpeg_with_exif
from tests.camera.scene import REPO, home_visit
from tests.server import RunningServer

QUESTION = "Redness spreading from the lower edge since yesterday?"


async def run_cli(token: str, *args: str, cwd: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "woundcare", "camera", *args, cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), "WOUNDCARE_DEVICE_TOKEN": token},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return int(process.returncode or 0), out.decode(errors="replace")


async def test_the_camera_sends_an_econsult_and_a_refused_photo_is_told(server: RunningServer, tmp_path: Path) -> None:
    async with home_visit(server, tmp_path) as visit:
        good, bad = tmp_path / "wound.jpg", tmp_path / "notes.jpg"
        good.write_bytes(jpeg_with_exif())
        bad.write_bytes(b"not an image at all")
        code, out = await run_cli(
            visit.device_token, "--server", server.url, f"--patient={visit.patient}", "--econsult",
            "--question", QUESTION, "--urgency", "urgent", "--photo", str(good), "--photo", str(bad),
            "--queue-dir", str(tmp_path / "queue"), cwd=tmp_path)
        assert code == 1, out
        assert "sent with 1 of 2 photo(s)" in out and QUESTION not in out
        assert [p.name.split(".")[-1] for p in (tmp_path / "queue" / "rejected").iterdir()] == ["jpg"]

        queue = (await visit.spes.json("GET", "/api/consultations/queue"))["consultations"]
        assert [(c["channel"], c["urgency"], c["patient"]) for c in queue] == [("econsult", "urgent", visit.patient)]
        econsult = queue[0]["id"]
        assert (await visit.spes.json("GET", f"/api/consultations/{econsult}"))["question"] == QUESTION
        photos = (await visit.spes.json("GET", f"/api/consultations/{econsult}/snapshots"))["snapshots"]
        assert len(photos) == 1
        # The device acts for its nurse: the e-consult is hers.
        mine = (await visit.nurse.json("GET", "/api/consultations/econsults"))["consultations"]
        assert [c["id"] for c in mine] == [econsult]


async def test_the_econsult_flags_are_checked_before_anything_is_sent(tmp_path: Path) -> None:
    code, out = await run_cli("wcd_x", "--server", "http://127.0.0.1:9", "--patient=p", "--econsult",
                              "--question", QUESTION, cwd=tmp_path)
    assert code == 2 and "--econsult needs --patient, --question and at least one --photo" in out
