"""``woundcare camera --econsult``: photos and a question sent from the head camera's device
for a specialist to answer later (store and forward), in the nurse page's three steps: the
e-consult (channel ``econsult``), the patient's consent to storing photos, then each photo
through the snapshots' upload, which checks it and strips its metadata like any still.

The photos go through the camera's on-disk queue (:mod:`woundcare.camera.snapshots`), after the
e-consult is made (the queue names the consultation they belong to): retried with backoff, a
refused one set aside. The e-consult itself needs the network: without one the command fails
before anything is sent, and a photo that cannot be uploaded leaves the e-consult in the queue
without it (the program exits 1 and says so).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from .device import DeviceApi
from .snapshots import SnapshotQueue, SnapshotUploader

log = logging.getLogger(__name__)

MAX_PHOTOS = 6
"""As on the nurse's page: enough for the wound and its surroundings, few enough for a slow line."""
MAX_QUESTION_CHARS = 2000
URGENCIES = ("routine", "soon", "urgent")
"""The wire's urgencies (``woundcare.db.models.Urgency``; the camera speaks HTTP, not SQL)."""


@dataclass(frozen=True, slots=True)
class EconsultOptions:
    server: str
    token: str = field(repr=False)
    patient: str
    """The patient's pseudonym."""
    question: str = field(repr=False)
    urgency: str
    photos: tuple[Path, ...]
    queue_dir: Path = Path("var/camera-queue")

    def __post_init__(self) -> None:
        if not self.token.startswith("wcd_"):
            raise ValueError("'token' must be a device token (wcd_...)")
        if not 0 < len(self.question.strip()) <= MAX_QUESTION_CHARS:
            raise ValueError(f"'question' must be text of 1-{MAX_QUESTION_CHARS} characters")
        if self.urgency not in URGENCIES:
            raise ValueError(f"'urgency' must be one of: {', '.join(URGENCIES)}")
        if not 0 < len(self.photos) <= MAX_PHOTOS:
            raise ValueError(f"give 1 to {MAX_PHOTOS} photos")
        if missing := [str(p) for p in self.photos if not p.is_file()]:
            raise ValueError(f"no such photo: {', '.join(missing)}")


@dataclass(frozen=True, slots=True)
class SentEconsult:
    id: str
    photos: int
    """How many photos the server stored (a refused one is set aside in the queue's rejected/)."""


async def send_econsult(options: EconsultOptions) -> SentEconsult:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        api = DeviceApi(session, options.server, options.token)
        sent = await api.json("POST", "/api/consultations", {
            "patient": options.patient, "channel": "econsult",
            "question": options.question.strip(), "urgency": options.urgency,
        })
        econsult = str(sent["id"])
        await api.record_consent(econsult, frozenset({"snapshots"}))
        uploader = SnapshotUploader(session, options.server, options.token, SnapshotQueue(options.queue_dir))
        for photo in options.photos:
            uploader.submit(econsult, None, photo.read_bytes())
        await uploader.drain()
    stored = sum(1 for answer in uploader.uploaded if answer.get("consultation") == econsult)
    log.info("e-consult %s sent with %d photo(s)", econsult, stored)
    return SentEconsult(econsult, stored)
