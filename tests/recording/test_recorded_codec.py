"""What video the specialist's page records. The camera's VP8 frames pass through as received
(Chromium's ``MediaRecorder`` asked for no type: ``test_live_recording.py``); any other codec
is encoded to VP8 in the page, since the stored recording is WebM. Here the nurse's page sends
H.264 (as a phone that prefers it does), over coturn, and the call is still recorded, as VP8."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av

from tests.e2e.browser import eventually
from tests.e2e.flows import UI_TIMEOUT_MS, call_in_two_browsers
from tests.recording.media import decoded
from tests.recording.test_live_recording import RECORDER_TYPES

NURSE_SENDS_H264 = """
(() => {
  // The nurse's page offers its video in H.264 only.
  const createOffer = RTCPeerConnection.prototype.createOffer;
  RTCPeerConnection.prototype.createOffer = function (...args) {
    const h264 = RTCRtpReceiver.getCapabilities('video').codecs.filter((c) => c.mimeType === 'video/H264');
    for (const transceiver of this.getTransceivers()) {
      if (transceiver.receiver.track.kind === 'video') transceiver.setCodecPreferences(h264);
    }
    return createOffer.apply(this, args);
  };
})();
"""

RECEIVED_CODEC = """
async () => {
  for (const pc of window.__testPeers) {
    if (pc.connectionState !== 'connected') continue;
    const report = await pc.getStats();
    for (const s of report.values()) {
      if (s.type === 'inbound-rtp' && s.kind === 'video' && s.codecId) return report.get(s.codecId).mimeType;
    }
  }
  return null;
}
"""

RECORDINGS = "async (id) => (await (await fetch(`/api/consultations/${id}/recordings`)).json()).recordings"


async def test_a_camera_sending_h264_is_recorded_as_vp8_encoded_in_the_page(start_server: Any, tmp_path: Path) -> None:
    from playwright.async_api import expect

    async with call_in_two_browsers(start_server, tmp_path, specialist_locale="en-GB", nurse_script=NURSE_SENDS_H264,
                                    specialist_script=RECORDER_TYPES, consents=("recording",)) as call:
        page = call.specialist
        assert await eventually(lambda: page.evaluate(RECEIVED_CODEC), lambda c: c is not None, 20,
                                "the camera's codec") == "video/H264"
        toggle = page.locator("#recording-toggle")
        await toggle.click()
        await expect(toggle).to_have_attribute("aria-pressed", "true", timeout=UI_TIMEOUT_MS)
        await eventually(lambda: page.evaluate("() => window.__recorderTypes"), lambda t: len(t) == 1, 20,
                         "the page's recorder started")
        await page.wait_for_timeout(3000)
        await toggle.click()
        await expect(toggle).to_have_attribute("aria-pressed", "false", timeout=UI_TIMEOUT_MS)
        # Not passed through: VP8 asked for, and encoded in the page.
        assert await page.evaluate("() => window.__recorderTypes") == ["video/webm;codecs=vp8,opus"]
        [stopped] = await page.evaluate(RECORDINGS, call.consultation)
        assert stopped["status"] == "complete" and stopped["frames"] > 10, stopped
        media = await page.evaluate(
            "async (id) => Array.from(new Uint8Array(await (await fetch(`/api/recordings/${id}`)).arrayBuffer()))",
            stopped["id"])
        assert len(decoded(bytes(media))) == stopped["frames"]
        with av.open(io.BytesIO(bytes(media))) as container:
            assert container.streams.video[0].codec_context.name == "vp8"
        assert call.page_errors == []
