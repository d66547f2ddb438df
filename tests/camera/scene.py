"""A home visit for camera tests: staff, a head-camera device, a patient, the real
``woundcare camera`` in its own process, and a specialist's aiortc viewer."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from aiortc import MediaStreamTrack

from signaling.protocol import ClientMessage, Role
from tests.api.client import ApiClient
from tests.server import RunningServer
from woundcare.webrtc.client import SignalingClient
from woundcare.webrtc.peer import Viewer, ice_configuration, pump, shutdown
from woundcare.db.models import StaffRole

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
NATIONAL_ID = "01018012371"


async def next_of(inbox: asyncio.Queue[dict[str, Any]], kind: str, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
    """The next frame of ``kind`` whose fields equal ``match``; others are skipped."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await inbox.get()
            if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
                return frame


def write_tone(path: Path, hertz: float, seconds: float, rate: int = 48000) -> Path:
    """A mono 16-bit WAV of one pitch: a microphone for ``--microphone`` or a fake capture device."""
    t = np.arange(int(seconds * rate)) / rate
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((8000 * np.sin(2 * np.pi * hertz * t)).astype(np.int16).tobytes())
    return path


class Heard(NamedTuple):
    hertz: float
    """The dominant pitch."""
    level: float
    """RMS, of 32767."""
    purity: float
    """The share of the energy within 10 Hz of :attr:`hertz`: near 1 for a clean tone."""


def last_second(path: Path) -> Heard:
    """What the last second of a WAV's first channel holds."""
    with wave.open(str(path)) as played:
        rate = played.getframerate()
        samples = np.frombuffer(played.readframes(played.getnframes()), dtype=np.int16)
        samples = samples.reshape(-1, played.getnchannels())[:, 0].astype(np.float64)
    assert len(samples) > rate, f"{path.name} holds under a second"
    tail = samples[-rate:]
    energy = np.abs(np.fft.rfft(tail)) ** 2  # 1 Hz bins: the tail is one second long
    peak = int(np.argmax(energy))
    purity = energy[max(0, peak - 10) : peak + 11].sum() / max(energy.sum(), 1.0)
    return Heard(float(peak), float(np.sqrt(np.mean(tail**2))), float(purity))


@dataclass
class Visit:
    server: RunningServer
    tmp_path: Path
    device_token: str
    patient: str
    nurse: ApiClient
    spes: ApiClient
    camera: subprocess.Popen[bytes] | None = None
    consultation: str | None = None
    specialist: SignalingClient | None = None
    viewer: Viewer | None = None
    inbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.tmp_path / "camera.log"

    def camera_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no camera log)"

    def start_camera(
        self,
        server_url: str,
        *extra: str,
        prefix: list[str] | None = None,
        env: dict[str, str] | None = None,
        consent: str = "video,snapshots",
        consultation: str | None = None,
        stdout: Path | None = None,
    ) -> None:
        """``woundcare camera`` in its own process (inside ``prefix``, e.g. ``ip netns exec``),
        starting a consultation for the visit's patient, or joining ``consultation``; its
        stdout goes to ``stdout`` if given (else to the log, with stderr)."""
        env = {**os.environ, "PYTHONPATH": str(REPO), "WOUNDCARE_DEVICE_TOKEN": self.device_token, **(env or {})}
        target = f"--consultation={consultation}" if consultation else f"--patient={self.patient}"
        with open(self.log_path, "ab") as log_file, open(stdout or os.devnull, "ab") as out:
            # A restarted camera adds to the log.
            self.camera = subprocess.Popen(
                [*(prefix or []), sys.executable, "-m", "woundcare", "camera", "--server", server_url,
                 target, "--consent", consent, "--source", "synthetic",
                 "--queue-dir", str(self.tmp_path / "queue"), *extra],
                cwd=self.tmp_path, env=env, stdout=out if stdout else log_file, stderr=log_file,
            )

    def assert_camera_running(self) -> None:
        assert self.camera is not None and self.camera.poll() is None, self.camera_log()

    async def find_consultation(self, timeout: float = 60) -> str:
        """The consultation the camera started, from the specialist's queue."""
        async with asyncio.timeout(timeout):
            while self.consultation is None:
                self.assert_camera_running()
                queue = (await self.spes.json("GET", "/api/consultations/queue"))["consultations"]
                self.consultation = queue[0]["id"] if queue else None
                await asyncio.sleep(0.2)
        return self.consultation

    async def join_specialist(self, timeout: float = 60, microphone: MediaStreamTrack | None = None) -> None:
        """Join as the specialist once the camera is in the room; start reading frames."""
        consultation = await self.find_consultation(timeout)
        self.specialist = SignalingClient(self.server.url)
        self.viewer = Viewer(self.specialist, ice_configuration([]), microphone)
        async with asyncio.timeout(timeout):
            while True:
                self.assert_camera_running()
                token = (await self.spes.json("POST", f"/api/consultations/{consultation}/join-token"))["token"]
                joined = await self.specialist.join(consultation, Role.SPECIALIST, token)
                if any(p["role"] == "nurse" for p in joined["peers"]):
                    break
                await self.specialist.send({"type": "leave"})
                await self.specialist.drop()
                await asyncio.sleep(0.3)
        self.tasks.append(asyncio.create_task(pump(self.specialist, self.viewer, self.inbox)))

    def nurse_id(self) -> str:
        assert self.specialist is not None
        return next(p["id"] for p in self.specialist.peers if p["role"] == "nurse")

    async def send(self, message: ClientMessage) -> None:
        assert self.specialist is not None
        await self.specialist.send(message)

    async def stop_camera(self) -> int | None:
        if self.camera is None:
            return None
        if self.camera.poll() is None:
            self.camera.terminate()
            try:
                return await asyncio.wait_for(asyncio.to_thread(self.camera.wait), 15)
            except TimeoutError:
                self.camera.kill()
        return await asyncio.to_thread(self.camera.wait)


@asynccontextmanager
async def home_visit(server: RunningServer, tmp_path: Path, region: str = "east") -> AsyncIterator[Visit]:
    """Users, a device and a patient in ``region``; everything stopped on exit."""
    await server.add_user("nurse1", PASSWORD, {region: StaffRole.NURSE})
    await server.add_user("spes", PASSWORD, {region: StaffRole.SPECIALIST})
    await server.add_user("admin", PASSWORD, {region: StaffRole.ADMIN})
    admin, nurse, spes = ApiClient(server.url), ApiClient(server.url), ApiClient(server.url)
    visit: Visit | None = None
    try:
        await admin.login("admin", PASSWORD)
        device = await admin.json("POST", "/api/devices", expect=201,
                                  json={"region": region, "user": "nurse1", "name": "hodekamera 1"})
        await nurse.login("nurse1", PASSWORD)
        patient = await nurse.json("POST", "/api/patients", expect=201,
                                   json={"region": region, "nationalId": NATIONAL_ID, "name": "Per Øst"})
        await spes.login("spes", PASSWORD)
        visit = Visit(server, tmp_path, device["token"], patient["id"], nurse, spes)
        yield visit
    finally:
        if visit is not None:
            with suppress(Exception):
                await visit.stop_camera()
            await shutdown(visit.tasks, visit.viewer, visit.specialist)
        for client in (admin, nurse, spes):
            await client.close()
