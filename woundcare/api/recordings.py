"""Consented recordings of the call's video: start and stop (the specialist), list, play back."""

from __future__ import annotations

from contextlib import aclosing

from aiohttp import web

from ..appkeys import services
from ..auth.policy import Action
from ..db.models import ConsentKind, RecordingStatus
from ..recording.recorder import RecordingBusy
from ..records.recordings import MEDIA_TYPE
from .errors import api_error, http_error
from .guard import audit_target, requires, subject
from .visible import CONSULTATION, RECORDING, load_visible

routes = web.RouteTableDef()


@routes.post("/api/consultations/{id}/recordings")
@requires(Action.RECORDING_START)
async def start_recording(request: web.Request) -> web.Response:
    view = await load_visible(request, CONSULTATION, Action.RECORDING_START)
    if view.ended_at is not None:
        raise api_error(409, "ended", "this consultation has ended")
    if not (await services(request).consents.current(view.id))[ConsentKind.RECORDING]:
        raise api_error(409, "no_consent", "the patient has not consented to the video being recorded")
    try:
        recording = await services(request).recorders.start(view, subject(request).ref)
    except RecordingBusy as exc:
        raise http_error(exc) from None
    audit_target(request, f"recording:{recording.id}", view.region_id)
    return web.json_response(recording.json(), status=201)


@routes.get("/api/consultations/{id}/recordings")
@requires(Action.RECORDING_VIEW)
async def list_recordings(request: web.Request) -> web.Response:
    view = await load_visible(request, CONSULTATION, Action.RECORDING_VIEW)
    recordings = await services(request).recordings.of_consultation(view.id)
    return web.json_response({"recordings": [r.json() for r in recordings]})


@routes.post("/api/recordings/{id}/stop")
@requires(Action.RECORDING_STOP)
async def stop_recording(request: web.Request) -> web.Response:
    """Stop, and answer once the recording is finished: sealed, published, complete."""
    row = await load_visible(request, RECORDING, Action.RECORDING_STOP)
    if row.status is not RecordingStatus.RECORDING:
        raise api_error(409, "not_recording", "this recording has ended")
    stopped = await services(request).recorders.stop(row.id)
    if stopped is None:
        # Another instance is making it; it ends with the consultation's room there.
        raise api_error(409, "other_instance", "this recording is made by another server instance")
    return web.json_response(stopped.json())


@routes.get("/api/recordings/{id}")
@requires(Action.RECORDING_VIEW)
async def play_recording(request: web.Request) -> web.StreamResponse:
    """The decrypted video, streamed; checked whole before the first byte is sent."""
    row = await load_visible(request, RECORDING, Action.RECORDING_VIEW)
    if row.status is not RecordingStatus.COMPLETE:
        raise api_error(409, "not_complete", "this recording is not complete")
    media = await services(request).recordings.media(row)
    response = web.StreamResponse(
        headers={
            "Content-Type": MEDIA_TYPE,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        }
    )
    response.content_length = media.size
    await response.prepare(request)
    async with aclosing(media.chunks) as chunks:
        try:
            async for chunk in chunks:
                await response.write(chunk)
        except ConnectionResetError:
            return response  # the player went away (closed, or seeking with a new request)
    await response.write_eof()
    return response
