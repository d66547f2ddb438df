"""Snapshots through the real API: sealed blobs, metadata removed, refusals that store nothing."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import pytest
from PIL import ExifTags, Image
from sqlalchemy import func, select

from tests.api.client import ApiClient
from tests.records.test_images import MARKER, bilevel_png, colour_at, corners, damaged_jpeg, planted_exif
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import Snapshot
from woundcare.db.models import StaffRole
from woundcare.storage.blobs import BlobStore
from woundcare.storage.intents import Intents

PASSWORD = "snapshot test password"


def wound_jpeg(width: int = 1600, height: int = 1200, *, gps: bool = True) -> bytes:
    rng = np.random.default_rng(7)
    pixels = rng.integers(90, 200, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x010E] = "PLANTED-DESCRIPTION"
    if gps:
        exif[0x8825] = {1: "N", 2: (60.0, 47.0, 30.0), 3: "E", 4: (11.0, 5.0, 0.0)}
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


@dataclass
class Ward:
    server: RunningServer
    nurse: ApiClient
    specialist: ApiClient
    consultation: str
    patient: str

    async def upload(self, data: bytes, client: ApiClient | None = None, request: str | None = None,
                     filename: str = "wound.jpg") -> aiohttp.ClientResponse:
        form = aiohttp.FormData()
        form.add_field("image", data, filename=filename, content_type="image/jpeg")
        if request is not None:
            form.add_field("request", request)
        return await (client or self.nurse).request(
            "POST", f"/api/consultations/{self.consultation}/snapshots", data=form)

    async def stored(self) -> tuple[int, int, int]:
        """Snapshot rows, unfinished write intents, blobs on disk."""
        async with self.server.app[SERVICES].database.sessions() as session:
            rows = await session.scalar(select(func.count()).select_from(Snapshot))
        settings = self.server.settings
        intents = len(Intents(settings.intent_dir, settings.instance_name).list())
        blobs = len(list(BlobStore(settings.blob_dir).keys()))
        return int(rows or 0), intents, blobs


@pytest.fixture
async def ward(start_server: Any, migrated_db_url: str) -> AsyncIterator[Ward]:
    ward = await open_ward(await start_server(database_url=migrated_db_url))
    yield ward
    await ward.nurse.close()
    await ward.specialist.close()


async def open_ward(server: RunningServer) -> Ward:
    """A logged-in nurse and specialist of region east, and a consultation with snapshot consent."""
    await server.add_user("nurse", PASSWORD, {"east": StaffRole.NURSE})
    await server.add_user("spes", PASSWORD, {"east": StaffRole.SPECIALIST})
    nurse, specialist = ApiClient(server.url), ApiClient(server.url)
    await nurse.login("nurse", PASSWORD)
    await specialist.login("spes", PASSWORD)
    patient = await nurse.json("POST", "/api/patients", expect=201,
                               json={"region": "east", "nationalId": "01018012371", "name": "Kari Øst"})
    consultation = await nurse.json("POST", "/api/consultations", expect=201, json={"patient": patient["id"]})
    await nurse.json("POST", f"/api/consultations/{consultation['id']}/consents", expect=201,
                     json={"video": True, "snapshots": True})
    return Ward(server, nurse, specialist, consultation["id"], patient["id"])


async def test_upload_is_sealed_stripped_announced_and_readable(ward: Ward) -> None:
    token = (await ward.specialist.json("POST", f"/api/consultations/{ward.consultation}/join-token"))["token"]
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{ward.server.url}/ws")
        await ws.send_json({"type": "join", "v": 1, "consultation": ward.consultation, "role": "specialist",
                            "token": token})
        assert (await ws.receive_json(timeout=5))["type"] == "joined"
        original = wound_jpeg()
        response = await ward.upload(original, request="req-1")
        assert response.status == 201, await response.text()
        stored = await response.json()
        note = await ws.receive_json(timeout=5)
        assert note == {"type": "snapshot_stored", "id": stored["id"], "request": "req-1"}
        await ws.close()
    assert (stored["width"], stored["height"], stored["mediaType"]) == (1600, 1200, "image/jpeg")

    image = await ward.specialist.request("GET", f"/api/snapshots/{stored['id']}")
    assert image.status == 200 and image.headers["Cache-Control"] == "no-store"
    body = await image.read()
    assert b"PLANTED-DESCRIPTION" not in body
    picture = Image.open(io.BytesIO(body))
    assert picture.size == (1600, 1200) and 0x8825 not in picture.getexif()
    thumb = Image.open(io.BytesIO(await (await ward.specialist.request(
        "GET", f"/api/snapshots/{stored['id']}/thumbnail")).read()))
    assert max(thumb.size) == 320

    # At rest, the blobs are ciphertext: no JPEG marker, no planted text.
    store = BlobStore(ward.server.settings.blob_dir)
    for key in store.keys():
        sealed = store.get(key)
        assert b"\xff\xd8\xff" not in sealed[:64] and b"PLANTED" not in sealed


def camera_jpeg(orientation: int) -> bytes:
    """A noisy photo with corners to tell its way up, GPS and other EXIF, XMP and a comment."""
    rng = np.random.default_rng(11)
    picture = np.asarray(corners(1200, 900)).astype(np.int16) + rng.integers(-20, 20, (900, 1200, 3))
    out = io.BytesIO()
    Image.fromarray(picture.clip(0, 255).astype(np.uint8)).transpose(Image.Transpose.ROTATE_90).save(
        out, "JPEG", quality=95, exif=planted_exif(orientation), comment=MARKER,
        xmp=f'<x:xmpmeta xmlns:x="adobe:ns:meta/">{MARKER}</x:xmpmeta>'.encode())
    return out.getvalue()


async def in_pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    """``data`` as a body of unknown length: aiohttp sends it chunked, one HTTP chunk a piece."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("raw", [None, "length", "chunked"], ids=["multipart", "raw-jpeg", "raw-jpeg-chunked"])
async def test_stored_photo_has_the_uploaded_pixels_and_no_metadata(ward: Ward, raw: str | None) -> None:
    # Turned a quarter left on the sensor; orientation 6 turns it back for a viewer.
    upload = camera_jpeg(orientation=6)
    assert MARKER.encode() in upload and Image.open(io.BytesIO(upload)).getexif().get_ifd(ExifTags.IFD.GPSInfo)
    if raw:
        # Chunked: the server gathers HTTP chunks of 100,000 bytes, each a chunk boundary of its own.
        body = upload if raw == "length" else in_pieces(upload, 100_000)
        response = await ward.nurse.request("POST", f"/api/consultations/{ward.consultation}/snapshots?request=r-2",
                                            data=body, headers={"Content-Type": "image/jpeg"})
    else:
        response = await ward.upload(upload, request="r-2")
    assert response.status == 201, await response.text()
    stored = await response.json()
    assert (stored["width"], stored["height"], stored["request"]) == (1200, 900, "r-2")

    body = await (await ward.specialist.request("GET", f"/api/snapshots/{stored['id']}")).read()
    picture = Image.open(io.BytesIO(body))
    assert np.array_equal(np.asarray(picture), np.asarray(Image.open(io.BytesIO(upload))))
    assert dict(picture.getexif()) == {ExifTags.Base.Orientation: 6}
    assert not {"comment", "xmp", "XML:com.adobe.xmp"} & picture.info.keys()
    for planted in (MARKER.encode(), b"WoundCam", b"xmpmeta", b"adobe:ns:meta"):
        assert planted not in body
    assert body.count(b"Exif\x00\x00") == 1  # the one-tag EXIF, nothing of the camera's

    thumb = Image.open(io.BytesIO(await (await ward.specialist.request(
        "GET", f"/api/snapshots/{stored['id']}/thumbnail")).read()))
    assert thumb.size == (320, 240)
    assert [colour_at(thumb, 0.05, 0.05), colour_at(thumb, 0.95, 0.05)] == ["red", "blue"]


async def test_raw_upload_over_the_cap_is_refused_before_reading(ward: Ward) -> None:
    limit = ward.server.settings.snapshot_max_bytes
    response = await ward.nurse.request("POST", f"/api/consultations/{ward.consultation}/snapshots",
                                        data=b"\xff\xd8\xff" + bytes(limit), headers={"Content-Type": "image/jpeg"})
    assert response.status == 413 and (await response.json())["error"]["code"] == "too_large"
    assert await ward.stored() == (0, 0, 0)


async def test_annotations_measure_the_wound_and_the_timeline_shows_it(ward: Ward) -> None:
    stored = await (await ward.upload(wound_jpeg())).json()
    annotations = {
        "items": [{"kind": "arrow", "start": [100, 100], "end": [300, 300]},
                  {"kind": "text", "at": [50, 50], "text": "granulering"}],
        "reference": {"start": [100, 1000], "end": [200, 1000], "lengthCm": 2},
        "outline": {"points": [[400, 400], [600, 400], [600, 550],
                               [400, 550]]},
    }
    path = f"/api/snapshots/{stored['id']}/annotations"
    await ward.nurse.json("PUT", path, expect=403, json=annotations)
    result = await ward.specialist.json("PUT", path, json=annotations)
    measurement = result["measurement"]
    assert (measurement["lengthCm"], measurement["widthCm"], measurement["areaCm2"]) == (5.0, 4.8, 12.0)
    bad = await ward.specialist.json("PUT", path, expect=400, json={"items": [{"kind": "laser"}]})
    assert bad["error"]["code"] == "bad_annotations"

    timeline = await ward.specialist.json("GET", f"/api/patients/{ward.patient}/timeline")
    kinds = [e["kind"] for e in timeline["entries"]]
    assert kinds == ["consultation", "snapshot"]
    assert timeline["entries"][1]["measurement"]["areaCm2"] == 12.0


def truncated_jpeg() -> bytes:
    data = wound_jpeg(800, 600)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda: b"Dette er ikke et bilde, bare tekst.\n" * 40, 415, "not_an_image"),
        (lambda: bilevel_png(10_000, 10_000, rows=10_000), 422, "too_many_pixels"),
        (truncated_jpeg, 422, "truncated"),
        (damaged_jpeg, 422, "truncated"),
        (lambda: bilevel_png(50_000, 50_000, rows=1), 422, "decompression_bomb"),
    ],
    ids=["text-renamed-jpg", "100-megapixels", "truncated-jpeg", "damaged-jpeg", "decompression-bomb"],
)
async def test_bad_uploads_are_refused_and_leave_nothing(ward: Ward, make: Any, status: int, code: str) -> None:
    response = await ward.upload(make())
    assert response.status == status
    assert (await response.json())["error"]["code"] == code
    assert await ward.stored() == (0, 0, 0)


async def test_upload_without_snapshot_consent_is_refused(ward: Ward) -> None:
    path = f"/api/consultations/{ward.consultation}/consents"
    await ward.nurse.json("POST", path, expect=201, json={"snapshots": False})
    response = await ward.upload(wound_jpeg(200, 200))
    assert response.status == 409 and (await response.json())["error"]["code"] == "no_consent"
    assert await ward.stored() == (0, 0, 0)


async def test_concurrent_uploads_all_land(ward: Ward) -> None:
    data = wound_jpeg(640, 480)
    responses = await asyncio.gather(*(ward.upload(data) for _ in range(8)))
    assert [r.status for r in responses] == [201] * 8
    assert await ward.stored() == (8, 0, 8)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, message: bytes) -> int:
    """One request on an open connection; its answer's status (the body read and dropped)."""
    writer.write(message)
    await writer.drain()
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


@pytest.mark.parametrize("shape", ["raw", "two-images"])
async def test_a_large_body_leaves_its_connection_answering(ward: Ward, shape: str) -> None:
    # A body past a megabyte is read in batches (the socket's receive low-water mark): the
    # connection's next request, a few hundred bytes, must still wake the server, whether
    # the body was read to its end or refused halfway (a second image).
    photo = wound_jpeg(2000, 1500, gps=False)
    assert len(photo) > 1_500_000
    cookies = "; ".join(f"{c.key}={c.value}" for c in ward.nurse.session.cookie_jar)
    headers = f"Host: test\r\nCookie: {cookies}\r\nX-CSRF-Token: {ward.nurse.csrf}\r\n"
    path = f"/api/consultations/{ward.consultation}/snapshots"
    if shape == "raw":
        content_type, body, status = "image/jpeg", photo, 201
    else:
        boundary = "b0undary"
        part = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="w.jpg"\r\n'
                "Content-Type: image/jpeg\r\n\r\n").encode() + photo + b"\r\n"
        content_type, body, status = f"multipart/form-data; boundary={boundary}", part * 2 + f"--{boundary}--\r\n".encode(), 400
    host, port = ward.server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        upload = f"POST {path} HTTP/1.1\r\n{headers}Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        assert await _exchange(reader, writer, upload.encode() + body) == status
        assert await _exchange(reader, writer, f"GET {path} HTTP/1.1\r\n{headers}\r\n".encode()) == 200
    finally:
        writer.close()
