"""Consented recordings of the call, made in the specialist's browser: start, upload, stop
(the specialist), list, play back (with ranges, so a player can seek)."""

from __future__ import annotations

from contextlib import aclosing

from aiohttp import web

from ..appkeys import services
from ..auth.policy import Action
from ..crypto.stream import MAX_CHUNK
from ..db.models import ConsentKind, RecordingStatus
from ..records.recordings import MEDIA_TYPE, Media
from .errors import api_error
from .guard import audit_target, requires, subject
from .visible import CONSULTATION, RECORDING, load_visible

routes = web.RouteTableDef()

MAX_PIECE = MAX_CHUNK
"""The largest piece of a recording one request carries (a second of video is far less)."""


@routes.post("/api/consultations/{id}/recordings")
@requires(Action.RECORDING_START)
async def start_recording(request: web.Request) -> web.Response:
    view = await load_visible(request, CONSULTATION, Action.RECORDING_START)
    if view.ended_at is not None:
        raise api_error(409, "ended", "this consultation has ended")
    if not (await services(request).consents.current(view.id))[ConsentKind.RECORDING]:
        raise api_error(409, "no_consent", "the patient has not consented to the video being recorded")
    recording = await services(request).recording_uploads.start(view, subject(request).ref)
    audit_target(request, f"recording:{recording.id}", view.region_id)
    return web.json_response(recording.json(), status=201)


@routes.get("/api/consultations/{id}/recordings")
@requires(Action.RECORDING_VIEW)
async def list_recordings(request: web.Request) -> web.Response:
    view = await load_visible(request, CONSULTATION, Action.RECORDING_VIEW)
    recordings = await services(request).recordings.of_consultation(view.id)
    return web.json_response({"recordings": [r.json() for r in recordings]})


@routes.post("/api/recordings/{id}/parts")
@requires(Action.RECORDING_UPLOAD)
async def next_part(request: web.Request) -> web.Response:
    """A new part of the recording: its starter's page began recording (again, after a reload)."""
    row = await load_visible(request, RECORDING, Action.RECORDING_UPLOAD)
    part = await services(request).recording_uploads.next_part(row, subject(request).ref)
    return web.json_response({"part": part}, status=201)


@routes.post("/api/recordings/{id}/pieces")
@requires(Action.RECORDING_UPLOAD)
async def add_piece(request: web.Request) -> web.Response:
    """Piece ``n`` of part ``part`` (query), the body the bytes ``MediaRecorder`` gave; sealed
    before the answer."""
    row = await load_visible(request, RECORDING, Action.RECORDING_UPLOAD)
    try:
        part, number = int(request.query["part"]), int(request.query["n"])
        if part < 0 or number < 0:
            raise ValueError
    except (KeyError, ValueError):
        raise api_error(400, "bad_piece", "a piece names its part and number as integers from 0") from None
    if request.content_length is None or request.content_length > MAX_PIECE:
        raise api_error(413, "piece_too_large", f"a piece has a length of at most {MAX_PIECE} bytes")
    data = await request.read()
    await services(request).recording_uploads.add(row, subject(request).ref, part, number, data)
    return web.Response(status=204)


@routes.post("/api/recordings/{id}/stop")
@requires(Action.RECORDING_STOP)
async def stop_recording(request: web.Request) -> web.Response:
    """Stop, and answer once the recording is finished: made seekable, sealed, complete."""
    row = await load_visible(request, RECORDING, Action.RECORDING_STOP)
    if row.status is not RecordingStatus.RECORDING:
        raise api_error(409, "not_recording", "this recording has ended")
    stopped = await services(request).recording_uploads.stop(row.id)
    if stopped is None:
        # Another instance receives it; it ends with the consultation there.
        raise api_error(409, "other_instance", "this recording is made by another server instance")
    return web.json_response(stopped.json())


@routes.get("/api/recordings/{id}")
@requires(Action.RECORDING_VIEW)
async def play_recording(request: web.Request) -> web.StreamResponse:
    """The decrypted video, streamed; whole (checked whole before the first byte is sent) or
    the one byte range asked for (``206``), which is how a player seeks."""
    row = await load_visible(request, RECORDING, Action.RECORDING_VIEW)
    if row.status is not RecordingStatus.COMPLETE:
        raise api_error(409, "not_complete", "this recording is not complete")
    recordings = services(request).recordings
    headers = {
        "Content-Type": MEDIA_TYPE,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Accept-Ranges": "bytes",
    }
    wanted = _range(request)
    if wanted is None:
        media = await recordings.media(row)
        response = web.StreamResponse(headers=headers)
        response.content_length = media.size
    else:
        size = await recordings.size(row)
        start, stop = wanted.indices(size)[:2]
        if start >= stop:
            # Answered, not raised: the error pages would drop the size the player needs.
            return web.json_response(
                {"error": {"code": "bad_range", "message": "the range is outside the recording"}},
                status=416, headers={"Content-Range": f"bytes */{size}"},
            )
        media = await recordings.media_range(row, start, stop)
        response = web.StreamResponse(status=206, headers={**headers, "Content-Range": f"bytes {start}-{stop - 1}/{size}"})
        response.content_length = stop - start
    return await _stream(request, response, media)


def _range(request: web.Request) -> slice | None:
    """The one range a ``Range`` header asks for; None without one (or with several, which
    are answered whole, as RFC 9110 allows)."""
    if "," in request.headers.get("Range", ""):
        return None
    try:
        wanted = request.http_range
    except ValueError:
        raise api_error(416, "bad_range", "a range is bytes=first-last, bytes=first- or bytes=-suffix") from None
    return None if wanted.start is None and wanted.stop is None else wanted


async def _stream(request: web.Request, response: web.StreamResponse, media: Media) -> web.StreamResponse:
    async with aclosing(media.chunks) as chunks:
        await response.prepare(request)
        try:
            async for chunk in chunks:
                await response.write(chunk)
        except ConnectionResetError:
            return response  # the player went away (closed, or seeking with a new request)
    await response.write_eof()
    return response
