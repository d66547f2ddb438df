"""A guest in a live call, in three Chromiums (issue 19, protocol §3.4, §12.8): the specialist
invites an interpreter from the call, the interpreter's phone opens the one-time link, agrees
and joins as observer over the coturn relay. The guest decodes the nurse's camera (frames
advancing) and is heard on the specialist's page (audio energy growing on the connection the
specialist offered); the link does not open a second time; the guest's own socket asking for a
photo and its browser asking for the record are refused, and every refusal is in the audit trail.
While the specialist records the call, the guest's page shows it over the picture (protocol §7.6).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tests.e2e.browser import PEER_TRACKER, PHONE, eventually, launch, media_stats
from tests.e2e.flows import MEDIA_SECONDS, UI_TIMEOUT_MS, call_in_two_browsers
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import AuditEvent, ConsultationEvent, GuestInvitation

SOCKET_TRACKER = """
(() => {
  const Native = window.WebSocket;
  const sockets = [];
  Object.defineProperty(window, '__testSockets', { value: sockets });
  window.WebSocket = class extends Native {
    constructor(...args) { super(...args); sockets.push(this); }
  };
})();
"""
"""The guest page's own signaling socket, so the test can send on it what a tampered page would."""

# What the specialist's page receives on the connections it offered: those to guests (its
# connection to the camera is the camera's offer, answered).
FROM_GUESTS = """
async () => {
  const out = { audioEnergy: 0, audioBytes: 0, framesDecoded: 0, connections: 0 };
  for (const pc of window.__testPeers) {
    if (pc.connectionState === 'closed' || pc.localDescription?.type !== 'offer') continue;
    out.connections += 1;
    out.states = [pc.connectionState, pc.signalingState, pc.iceConnectionState, pc.getTransceivers().map((t) => `${t.mid}:${t.direction}:${t.currentDirection}:${t.receiver.track.kind}`).join(',')];
    out.candidates = { local: 0, remote: 0, pairs: 0 };
    for (const s of (await pc.getStats()).values()) {
      if (s.type === 'local-candidate') out.candidates.local += 1;
      if (s.type === 'remote-candidate') out.candidates.remote += 1;
      if (s.type === 'candidate-pair') out.candidates.pairs += 1;
      if (s.type !== 'inbound-rtp') continue;
      if (s.kind === 'audio') { out.audioEnergy += s.totalAudioEnergy || 0; out.audioBytes += s.bytesReceived || 0; }
      if (s.kind === 'video') out.framesDecoded += s.framesDecoded || 0;
    }
  }
  return out;
}
"""

SEND_SNAPSHOT_REQUEST = """
() => new Promise((resolve) => {
  const ws = window.__testSockets.filter((s) => s.readyState === WebSocket.OPEN).at(-1);
  ws.addEventListener('message', (event) => {
    const frame = JSON.parse(event.data);
    if (frame.type === 'error') resolve(frame);
  });
  ws.send(JSON.stringify({ type: 'snapshot_request', id: 'guest-photo' }));
})
"""

READ = "async (path) => (await fetch(path, { cache: 'no-store' })).status"

REMOTE_VIDEO = """
() => { const v = document.getElementById('remote-video');
        return { width: v.videoWidth, height: v.videoHeight, frames: v.getVideoPlaybackQuality().totalVideoFrames }; }
"""


async def audit(server: RunningServer, action: str) -> list[tuple[str | None, str, str | None]]:
    async with server.app[SERVICES].database.sessions() as session:
        rows = await session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq))
        return [(r.actor, r.outcome, r.resource) for r in rows]


async def open_link(browser: Any, link: str) -> Any:
    context = await browser.new_context(viewport=PHONE, locale="nb-NO")
    for script in (PEER_TRACKER, SOCKET_TRACKER):
        await context.add_init_script(script)
    page = await context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    await page.goto(link)
    await page.check("#guest-consent")
    await page.click("#join")
    return page


async def test_an_interpreter_sees_and_is_heard_and_is_refused_photos_and_the_record(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path
) -> None:
    async with call_in_two_browsers(start_server, tmp_path, consents=("recording",)) as call:
        specialist, server = call.specialist, call.server
        await specialist.select_option("#guest-kind", "interpreter")
        await specialist.fill("#guest-label", "arabisk")
        await specialist.click("#guest-invite")
        link_field = specialist.locator("#guest-link")
        await link_field.wait_for(state="visible")
        link = await link_field.input_value()
        assert link.startswith(server.url + "/guest#wcg_")
        await specialist.locator("#guest-list .guest").filter(has_text="arabisk").wait_for()

        browser = await launch(call.playwright)
        try:
            guest = await open_link(browser, link)
            guest.on("pageerror", lambda error: call.page_errors.append(str(error)))
            await guest.locator("#call").wait_for(state="visible")
            # The one-time code is out of the address bar before the guest has done anything.
            assert guest.url == server.url + "/guest"
            # A phone's screen: nothing scrolls sideways.
            assert await guest.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

            # The guest sees the nurse's camera: a picture with a size, its frames advancing.
            seen = await eventually(lambda: media_stats(guest), lambda s: s["framesDecoded"] > 0 and s["relay"],
                                    MEDIA_SECONDS, "the guest decodes the nurse's video over the relay")
            await eventually(lambda: guest.evaluate(REMOTE_VIDEO), lambda v: v["width"] > 0 and v["frames"] > 0,
                             MEDIA_SECONDS, "the guest's page shows the nurse's picture")
            await eventually(lambda: media_stats(guest), lambda s: s["framesDecoded"] > seen["framesDecoded"] + 10,
                             MEDIA_SECONDS, "the guest's frames advance")
            # And is heard (and seen) on the specialist's page, on the connection it offered the guest.
            heard = await eventually(lambda: specialist.evaluate(FROM_GUESTS),
                                     lambda s: s["connections"] == 1 and s["audioEnergy"] > 0 and s["framesDecoded"] > 0,
                                     MEDIA_SECONDS, "the specialist receives the guest's voice and camera")
            await eventually(lambda: specialist.evaluate(FROM_GUESTS),
                             lambda s: s["audioEnergy"] > heard["audioEnergy"] and s["audioBytes"] > heard["audioBytes"],
                             MEDIA_SECONDS, "the guest's voice keeps coming")
            # The specialist's voice reaches the guest too, and everyone sees an interpreter in the call.
            await eventually(lambda: media_stats(guest), lambda s: s["audioPacketsReceived"] > 0 and s["connected"] == 2,
                             MEDIA_SECONDS, "the guest is connected to the nurse and the specialist")
            for page in (specialist, call.nurse):
                await page.locator("#participants .who").filter(has_text="Tolk").wait_for()
            # The guest sees when the call is recorded, over the picture, and when it no longer is.
            badge = guest.locator("#recording-badge")
            assert await badge.is_hidden()
            toggle = specialist.locator("#recording-toggle")
            await toggle.click()
            await badge.wait_for(state="visible")
            assert await guest.evaluate(
                "() => { const s = document.querySelector('.guest-stage').getBoundingClientRect();"
                " const b = document.getElementById('recording-badge').getBoundingClientRect();"
                " return b.top >= s.top && b.bottom <= s.bottom && b.left >= s.left && b.right <= s.right; }")
            # Stopped once the specialist's page has the recording (its start answered).
            await specialist.locator("#recording-toggle[aria-pressed='true']").wait_for()
            await toggle.click()
            await badge.wait_for(state="hidden")

            # The link opened the call once: another phone gets the refusal, audited.
            again = await open_link(browser, link)
            await again.locator("#intro-error[data-i18n='guest.error.invitation_used']").wait_for()
            await again.context.close()

            async with server.app[SERVICES].database.sessions() as session:
                ref = await session.scalar(select(GuestInvitation.subject))
            view = await server.app[SERVICES].consultations.get(call.consultation)
            assert ref is not None and view is not None
            where = f"consultation:{call.consultation}"

            # A photo asked for on the guest's own socket: refused, audited, never relayed.
            refused = await guest.evaluate(SEND_SNAPSHOT_REQUEST)
            assert (refused["code"], refused["ref"]) == ("forbidden", "snapshot_request")
            await eventually(lambda: audit(server, "signaling.snapshot_request"), lambda rows: len(rows) == 1,
                             10, "the refused photo request is audited")
            assert await audit(server, "signaling.snapshot_request") == [(ref, "denied", where)]
            # The record: the patient, the snapshots, the assessment, the timeline.
            for path, action in (
                (f"/api/patients/{view.patient}", "patient.read"),
                (f"/api/consultations/{call.consultation}/snapshots", "snapshot.read"),
                (f"/api/consultations/{call.consultation}/assessment", "assessment.read"),
                (f"/api/patients/{view.patient}/timeline", "timeline.read"),
            ):
                assert await guest.evaluate(READ, path) == 403, path
                assert (ref, "denied") in [(actor, outcome) for actor, outcome, _ in await audit(server, action)], action
            assert [(o, r) for _, o, r in await audit(server, "guest.join")][:2] == [("ok", where), ("denied", where)]
            await server.app[SERVICES].session_log.flush()
            async with server.app[SERVICES].database.sessions() as session:
                kinds = (await session.scalars(select(ConsultationEvent.kind).where(
                    ConsultationEvent.consultation_id == call.consultation))).all()
            assert "refused" in kinds and "snapshot_requested" not in kinds
            assert not call.page_errors, call.page_errors
        finally:
            await browser.close()
