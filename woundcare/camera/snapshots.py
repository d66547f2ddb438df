"""Full-resolution stills from the head camera, queued on disk and uploaded.

Each still is written to the queue directory first (``create_once``: a temporary file, then
an atomic link), uploaded with ``POST /api/consultations/{id}/snapshots``, and deleted only once
the server answers 201. A network failure or a 5xx keeps the file and retries with
backoff; files left by a crash or a restart are uploaded on the next start. A still the
server refuses for good (a bad or oversized image) moves to ``rejected/`` and is not
tried again.

File names carry everything needed to upload: ``<ns>.<consultation>.<request>.jpg``,
where ``request`` may be empty (a still nobody asked for over ``/ws``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from ..errors import WoundcareError
from ..storage.files import create_once

log = logging.getLogger(__name__)

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PERMANENT = frozenset({400, 404, 413, 415, 422})
"""Answers that will not change on a retry: the still is set aside."""


@dataclass(frozen=True, slots=True)
class QueuedSnapshot:
    path: Path
    consultation: str
    request: str | None


class SnapshotQueue:
    """The on-disk queue: one JPEG per pending still, oldest first."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.rejected = directory / "rejected"
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(".*.tmp"):  # a write cut short by a crash
            stale.unlink(missing_ok=True)

    def put(self, consultation: str, request: str | None, jpeg: bytes) -> QueuedSnapshot:
        for name, value in (("consultation", consultation), ("request", request)):
            if value is not None and not _ID.fullmatch(value):
                raise ValueError(f"'{name}' must match {_ID.pattern} (got '{value}')")
        final = self.directory / f"{time.time_ns():020d}.{consultation}.{request or ''}.jpg"
        create_once(final, jpeg)
        return QueuedSnapshot(final, consultation, request)

    def pending(self) -> list[QueuedSnapshot]:
        items = []
        for path in sorted(self.directory.glob("*.jpg")):
            parts = path.name.split(".")
            if len(parts) == 4:
                items.append(QueuedSnapshot(path, parts[1], parts[2] or None))
        return items

    def reject(self, item: QueuedSnapshot) -> None:
        self.rejected.mkdir(exist_ok=True)
        os.replace(item.path, self.rejected / item.path.name)


class UploadFailed(WoundcareError):
    """An upload that may succeed later (network down, server busy, 5xx)."""


class SnapshotUploader:
    """Drains a :class:`SnapshotQueue` to the server; :meth:`run` is its one task."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        queue: SnapshotQueue,
        *,
        first_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._token = token
        self.queue = queue
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self.uploaded: list[dict[str, object]] = []
        """The server's answers to this run's uploads, for logs and tests."""

    def submit(self, consultation: str, request: str | None, jpeg: bytes) -> QueuedSnapshot:
        """Queue a still on disk (before any network use) and wake the uploader."""
        item = self.queue.put(consultation, request, jpeg)
        self._wake.set()
        return item

    async def upload(self, item: QueuedSnapshot) -> None:
        """One attempt. Deletes the file on 201, sets it aside on a permanent refusal,
        raises :class:`UploadFailed` (file kept) otherwise."""
        form = aiohttp.FormData()
        form.add_field("image", item.path.read_bytes(), filename="still.jpg", content_type="image/jpeg")
        if item.request is not None:
            form.add_field("request", item.request)
        url = f"{self._base_url}/api/consultations/{item.consultation}/snapshots"
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            async with self._session.post(url, data=form, headers=headers) as response:
                body = await response.json(content_type=None) if response.content_length != 0 else None
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UploadFailed(f"upload failed: {type(exc).__name__}") from exc
        if status == 201:
            item.path.unlink(missing_ok=True)
            self.uploaded.append(body or {})
            log.info("snapshot uploaded for request %s", item.request)
        elif status in _PERMANENT:
            code = (body or {}).get("error", {}).get("code") if isinstance(body, dict) else None
            log.warning("snapshot refused (%s %s); set aside", status, code)
            self.queue.reject(item)
        else:
            raise UploadFailed(f"upload answered {status}")

    async def drain(self) -> None:
        """Upload everything queued, oldest first. A still that fails does not hold up the
        others; the rounds repeat with growing backoff until the queue is empty."""
        backoff = self._first_backoff
        while pending := self.queue.pending():
            failed = 0
            for item in pending:
                try:
                    await self.upload(item)
                except UploadFailed as exc:
                    failed += 1
                    log.warning("%s", exc)
            if failed:
                log.warning("%d snapshot(s) kept; retrying in %.1f s", failed, backoff)
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, self._max_backoff)

    async def run(self) -> None:
        """Until cancelled: drain the queue (files from earlier runs first), then wait."""
        while True:
            self._wake.clear()
            await self.drain()
            await self._wake.wait()
