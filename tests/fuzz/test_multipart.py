"""Malformed snapshot uploads against the real server's ``POST /api/consultations/{id}/snapshots``.

Each request is written byte for byte on a raw socket (a session cookie and CSRF header
like a browser's), so the body can be truncated, mislabelled or trickled. Every one must
get its documented status and error code (docs/openapi.json), log no error, store nothing
(no snapshot row, no write intent, no blob), and leave the server serving the next upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import orjson
import pytest
from yarl import URL

from tests.api.test_snapshots import Ward, open_ward, wound_jpeg
from tests.server import RunningServer

MAX_BYTES = 256 * 1024
UPLOAD_SECONDS = 1.0
BOUNDARY = "wc-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def part(name: str, data: bytes, *, filename: str | None = "wound.jpg", content_type: str = "image/jpeg") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n\r\n"
    return head.encode() + data + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    """0: the connection ended without a response."""
    code: str | None


@dataclass
class RawUploads:
    ward: Ward

    @property
    def path(self) -> str:
        return f"/api/consultations/{self.ward.consultation}/snapshots"

    async def stored_one(self) -> bool:
        """Exactly one snapshot row, its blobs, no unfinished write."""
        rows, intents, blobs = await self.ward.stored()
        return rows == 1 and intents == 0 and blobs >= 1

    def _head(self, content_type: str | None, length: int) -> bytes:
        nurse = self.ward.nurse
        jar = nurse.session.cookie_jar.filter_cookies(URL(nurse.base_url))
        lines = [
            f"POST {self.path} HTTP/1.1",
            "Host: 127.0.0.1",
            "Cookie: " + "; ".join(f"{key}={morsel.value}" for key, morsel in jar.items()),
            f"X-CSRF-Token: {nurse.csrf}",
            f"Content-Length: {length}",
            "Connection: close",
        ]
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def post(
        self, data: bytes, content_type: str | None = MULTIPART, *, declared: int | None = None,
        trickle: float | None = None,
    ) -> Reply:
        """Send ``data`` as the body; ``declared`` is a Content-Length larger than what is sent
        (then the client half-closes), ``trickle`` sends 16 bytes per that many seconds."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.ward.server.settings.port)
        try:
            writer.write(self._head(content_type, len(data) if declared is None else declared))
            response = asyncio.ensure_future(_response(reader))
            with contextlib.suppress(ConnectionError):
                if trickle is None:
                    writer.write(data)
                else:
                    # Until the server answers (it may read on a while after, to drain the body).
                    for start in range(0, len(data), 16):
                        if response.done():
                            break
                        writer.write(data[start:start + 16])
                        await asyncio.sleep(trickle)
                await writer.drain()
                if declared is not None:
                    writer.write_eof()
            async with asyncio.timeout(10):
                return await response
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _response(reader: asyncio.StreamReader) -> Reply:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return Reply(0, None)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
    payload = await reader.readexactly(int(headers["content-length"]))
    return Reply(status, orjson.loads(payload)["error"]["code"] if status >= 400 else None)


@pytest.fixture
async def uploads(start_server: Callable[..., Awaitable[RunningServer]]) -> AsyncIterator[RawUploads]:
    ward = await open_ward(await start_server(snapshot_max_bytes=MAX_BYTES, upload_timeout_seconds=UPLOAD_SECONDS))
    yield RawUploads(ward)
    await ward.nurse.close()
    await ward.specialist.close()


async def test_malformed_uploads_get_their_documented_codes_and_store_nothing(
    uploads: RawUploads, caplog: pytest.LogCaptureFixture
) -> None:
    image = wound_jpeg(320, 240)
    good = body(part("image", image))
    cases: dict[str, Awaitable[Reply]] = {
        "truncated mid-part": uploads.post(good[: len(good) // 2]),
        "no closing boundary": uploads.post(part("image", image)),
        "client leaves mid-body": uploads.post(good[: len(good) // 2], declared=len(good)),
        "no boundary parameter": uploads.post(good, "multipart/form-data"),
        "boundary not in body": uploads.post(good, "multipart/form-data; boundary=other"),
        "garbage body": uploads.post(b"\x00\xff not multipart " * 64),
        "no content type": uploads.post(good, None),
        "octet-stream": uploads.post(image, "application/octet-stream"),
        "raw body not an image": uploads.post(b"this is not a picture " * 100, "image/jpeg"),
        "raw body oversize": uploads.post(image + b"\0" * MAX_BYTES, "image/jpeg"),
        "raw body truncated": uploads.post(image[: len(image) // 2], "image/jpeg"),
        "json": uploads.post(b'{"image": "..."}', "application/json"),
        "oversize image part": uploads.post(body(part("image", image + b"\0" * MAX_BYTES))),
        "two image parts": uploads.post(body(part("image", image), part("image", image))),
        "unknown large field": uploads.post(body(part("junk", b"j" * (4 * MAX_BYTES)), part("image", image))),
        "oversize request field": uploads.post(body(part("request", b"r" * (4 * MAX_BYTES), filename=None),
                                                    part("image", image))),
        "no image part": uploads.post(body(part("request", b"req-1", filename=None))),
        "non-image bytes": uploads.post(body(part("image", b"this is not a picture " * 100))),
        "image truncated": uploads.post(body(part("image", image[: len(image) // 2]))),
    }
    expected = {
        "truncated mid-part": Reply(400, "bad_request"),
        "no closing boundary": Reply(400, "bad_request"),
        # aiohttp takes the half-close for a lost connection: no one is left to answer.
        "client leaves mid-body": Reply(0, None),
        "no boundary parameter": Reply(400, "bad_request"),
        "boundary not in body": Reply(400, "bad_request"),
        "garbage body": Reply(400, "bad_request"),
        "no content type": Reply(415, "multipart_required"),
        "octet-stream": Reply(415, "multipart_required"),
        "raw body not an image": Reply(415, "not_an_image"),
        "raw body oversize": Reply(413, "too_large"),
        "raw body truncated": Reply(422, "truncated"),
        "json": Reply(415, "multipart_required"),
        "oversize image part": Reply(413, "too_large"),
        "two image parts": Reply(400, "bad_request"),
        "unknown large field": Reply(400, "bad_request"),
        "oversize request field": Reply(400, "bad_request"),
        "no image part": Reply(400, "bad_request"),
        "non-image bytes": Reply(415, "not_an_image"),
        "image truncated": Reply(422, "truncated"),
    }
    with caplog.at_level(logging.WARNING):
        replies = {name: await request for name, request in cases.items()}
    assert replies == expected
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert await uploads.ward.stored() == (0, 0, 0)

    # The server still serves: the same image, well formed, is stored.
    assert await uploads.post(good) == Reply(201, None)
    assert await uploads.stored_one()


async def test_trickled_bodies_time_out_while_others_upload(uploads: RawUploads) -> None:
    """Slowloris: bodies sent 16 bytes at a time get 408 once the upload time is up, and
    an upload sent meanwhile is stored."""
    image = wound_jpeg(320, 240)
    good = body(part("image", image))
    # At 16 bytes per 50 ms the body would take far longer than the upload time.
    assert len(good) / 16 * 0.05 > 10 * UPLOAD_SECONDS
    trickles = [asyncio.ensure_future(uploads.post(good, trickle=0.05)) for _ in range(5)]
    await asyncio.sleep(0.2)
    assert await uploads.post(good) == Reply(201, None)
    assert not any(t.done() for t in trickles)
    assert await asyncio.gather(*trickles) == [Reply(408, "request_timeout")] * 5
    assert await uploads.stored_one()
