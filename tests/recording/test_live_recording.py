"""A live call from ``woundcare camera`` (synthetic source, a tone for the nurse's voice)
recorded in the specialist's page in Chromium, with a watcher scanning the data folder every
few milliseconds for plaintext media; the page shows that it records (also after a reload),
and stops showing it at the end, and the camera logs both and prints them as event lines; then the recording has its sound, seeks in the page's
player, plays back only with the region's key, and not at all once shredded."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.api.client import ApiClient
from tests.camera.scene import PASSWORD, Visit, home_visit, write_tone
from tests.e2e.browser import PEER_TRACKER, async_playwright, eventually, launch, media_stats
from tests.e2e.flows import log_in
from tests.recording.media import decoded, loudness, webm_part
from tests.recording.test_recordings import _flip_bit, _swap_chunks, _truncate
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.crypto import Binding, KeyShreddedError, RecordIntegrityError
from woundcare.crypto.stream import CHUNK_SIZE, open_stream
from woundcare.db.models import AuditEvent, RecordingStatus
from woundcare.db.models import StaffRole
from woundcare.records.recordings import KEY_KIND, VIDEO_KIND
from woundcare.storage.blobs import TEMP_PREFIX

NATIONAL_ID = "01018012371"
UI_TIMEOUT_MS = 20_000

# Plaintext media, as a container or a raw stream would put it on disk.
_MARKERS = [
    ("EBML header", re.compile(rb"\x1a\x45\xdf\xa3.{1,8}\x42\x86\x81\x01", re.DOTALL)),
    # The DocType element (id 0x4282, then its size) with its string: what every WebM/Matroska
    # file carries, and no 7 random bytes of ciphertext plausibly do.
    ("WebM/Matroska doc type", re.compile(rb"\x42\x82[\x84\x88](?:webm|matroska)")),
    ("MP4 ftyp box", re.compile(rb"ftyp(?:isom|iso[2-9]|mp4[12]|avc1|dash|M4V )")),
    ("MPEG-TS sync", re.compile(rb"\x47.{187}\x47.{187}\x47.{187}\x47.{187}\x47", re.DOTALL)),
]
_MIN_ENTROPY = 7.9
"""Bits per byte a sealed blob of at least :data:`_ENTROPY_FROM` bytes must show (random: ~7.99)."""
_ENTROPY_FROM = 16 * 1024


def entropy(data: bytes) -> float:
    counts = Counter(data)
    return -sum(n / len(data) * math.log2(n / len(data)) for n in counts.values())


@dataclass
class Watcher:
    """Scans every file under ``root`` over and over, from a thread, until stopped."""

    root: Path
    sealed_dirs: tuple[Path, ...]
    """Where every file must look random."""
    sweeps: int = 0
    largest_temp: int = 0
    """The largest unpublished recording file seen: proof the scan saw one being written."""
    violations: list[tuple[str, str]] = field(default_factory=list)
    """(what was found, the file relative to ``root``)"""
    _seen: dict[Path, tuple[int, int]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="plaintext-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for directory, _, names in os.walk(self.root):
                for name in names:
                    self._check(Path(directory) / name)
            self.sweeps += 1
            self._stop.wait(0.003)

    def _check(self, path: Path) -> None:
        try:
            stat = path.stat()
            if self._seen.get(path) == (stat.st_size, stat.st_mtime_ns):
                return  # unchanged since the last scan
            data = path.read_bytes()
        except FileNotFoundError:
            return  # renamed or removed between listing and reading
        self._seen[path] = (stat.st_size, stat.st_mtime_ns)
        where = str(path.relative_to(self.root))
        self.violations.extend((what, where) for what, pattern in _MARKERS if pattern.search(data))
        if any(directory in path.parents for directory in self.sealed_dirs):
            if path.name.startswith(TEMP_PREFIX) and path.parent.parent.name == "recordings":
                self.largest_temp = max(self.largest_temp, len(data))
            if len(data) >= _ENTROPY_FROM and entropy(data) < _MIN_ENTROPY:
                self.violations.append(("low entropy", where))


async def until(check: Any, timeout: float, what: str, visit: Visit) -> Any:
    async with asyncio.timeout(timeout):
        while not (found := await check()):
            visit.assert_camera_running()
            await asyncio.sleep(0.1)
    return found


RECORDER_TYPES = """
(() => {
  // The type each MediaRecorder of this page was asked for ('': none, the camera's frames
  // passed through as received), read as it starts.
  window.__recorderTypes = [];
  const { start } = MediaRecorder.prototype;
  MediaRecorder.prototype.start = function (...args) { window.__recorderTypes.push(this.mimeType); return start.apply(this, args); };
})();
"""

SEEK = """
async () => {
  const video = document.getElementById('recording-player');
  if (video.readyState < 1) await new Promise((resolve) => video.addEventListener('loadedmetadata', resolve, { once: true }));
  const duration = video.duration;
  const seeked = new Promise((resolve) => video.addEventListener('seeked', resolve, { once: true }));
  const frame = new Promise((resolve) => video.requestVideoFrameCallback((now, meta) => resolve(meta.mediaTime)));
  video.currentTime = duration / 2;
  await seeked;
  const shown = await frame;
  return { duration, time: video.currentTime, shown, width: video.videoWidth, error: video.error && video.error.code };
}
"""


@pytest.mark.usefixtures("loopback_ice")
async def test_a_live_call_is_recorded_in_the_page_sealed_and_plays_back_only_with_the_region_key(
    server: RunningServer, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)  # a stop answers once the recording is finished
    data_dir = server.settings.data_dir
    watcher = Watcher(data_dir, (server.settings.recording_dir, server.settings.blob_dir))
    nurse_voice = write_tone(tmp_path / "nurse-440.wav", 440, seconds=120)
    events = tmp_path / "camera-events.jsonl"
    async with home_visit(server, tmp_path) as visit, async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            visit.start_camera(server.url, "--width", "640", "--height", "480", "--loopback-only",
                               "--microphone", str(nurse_voice), "--overlay-events", consent="video,recording",
                               stdout=events)
            consultation = await visit.find_consultation(30)
            context = await browser.new_context(locale="en-GB")
            await context.add_init_script(PEER_TRACKER)
            await context.add_init_script(RECORDER_TYPES)
            page = await context.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            parts: list[int] = []
            page.on("response", lambda r: parts.append(r.status) if r.url.endswith("/parts") else None)
            await log_in(page, server.url, "spes", "/specialist", password=PASSWORD)
            await page.locator(f"#queue-body tr[data-consultation='{consultation}'] button").click()
            await eventually(lambda: media_stats(page), lambda s: s["framesDecoded"] > 10, 45, "the page shows the camera")
            watcher.start()

            toggle = page.locator("#recording-toggle")
            await expect(page.locator("#recording-status")).to_have_attribute("data-i18n", "recording.idle")
            badge = page.locator("#recording-badge")
            await expect(badge).to_be_hidden()
            await toggle.click()
            await expect(toggle).to_have_attribute("aria-pressed", "true")
            await expect(badge).to_be_visible()
            await expect(badge).to_have_text("Recording")
            [live] = (await visit.spes.json("GET", f"/api/consultations/{consultation}/recordings"))["recordings"]
            assert live["status"] == "recording"

            async def chunks_written() -> bool:
                return watcher.largest_temp > 1 + 3 * (4 + CHUNK_SIZE + 16)

            await until(chunks_written, 90, "three sealed chunks on disk", visit)

            # A reload mid-recording: back in the call, the page goes on with the same recording, a second part.
            written = watcher.largest_temp
            await page.reload()
            await page.locator(f"#queue-body tr[data-consultation='{consultation}'] button").click()
            await expect(toggle).to_have_attribute("aria-pressed", "true")
            await expect(badge).to_be_visible()  # told on joining: a recording is on

            async def more_written() -> bool:
                return watcher.largest_temp > written + 2 * (4 + CHUNK_SIZE + 16) and len(parts) == 2

            await until(more_written, 90, "the second part's chunks on disk", visit)
            assert parts == [201, 201]
            # Chromium, the camera's VP8: the page asked for no type, so its recorder stores the
            # frames as they came (passed through) and encodes no video of its own.
            assert await page.evaluate("() => window.__recorderTypes") == [""]
            await toggle.click()
            await expect(toggle).to_have_attribute("aria-pressed", "false")
            await expect(badge).to_be_hidden()

            async def camera_told() -> bool:
                lines = events.read_text().splitlines() if events.exists() else []
                return [json.loads(line) for line in lines] == [
                    {"type": "recording", "state": "on"}, {"type": "recording", "state": "off"}]

            await until(camera_told, 20, "the camera's event lines: the recording on, then off", visit)
            assert "the call is being recorded" in visit.camera_log()
            assert "the call is no longer recorded" in visit.camera_log()
            play = page.locator("#recording-list button")
            await expect(play).to_have_count(1)
            await asyncio.sleep(0.1)  # one more sweep over the published blob
            watcher.stop()
            assert watcher.violations == []
            assert watcher.sweeps > 50
            [stopped] = (await visit.spes.json("GET", f"/api/consultations/{consultation}/recordings"))["recordings"]
            assert (stopped["status"], stopped["endReason"]) == ("complete", "stopped")

            # Plays back for the region's specialist: PyAV decodes every frame at the call's size,
            # and hears the call: the nurse's tone and the specialist's microphone, mixed.
            response = await visit.spes.request("GET", f"/api/recordings/{stopped['id']}")
            assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
            assert response.content_type == "video/webm"
            media = await response.read()
            sizes = decoded(media)
            assert len(sizes) == stopped["frames"] >= 30
            assert set(sizes) == {(640, 480)} == {(stopped["width"], stopped["height"])}
            streams, level = loudness(media)
            assert streams == 1 and level > 0.02, level  # silence is below 0.001

            # The page's player seeks to the middle (ranges of the decrypted stream) and shows a frame there.
            await play.click()
            seek = await page.evaluate(SEEK)
            assert seek["error"] is None and 2 < seek["duration"] < 1000, seek
            assert abs(seek["time"] - seek["duration"] / 2) < 0.5 and seek["width"] == 640, seek
            listed = await visit.spes.json("GET", f"/api/consultations/{consultation}/recordings")
            assert [r["id"] for r in listed["recordings"]] == [stopped["id"]]
            await integrity_and_shredding(server, visit.spes, stopped["id"])
        finally:
            watcher.stop()
            await browser.close()


async def integrity_and_shredding(server: RunningServer, spes: ApiClient, recording: str) -> None:
    app = server.app
    row = await app[SERVICES].recordings.get(recording)
    assert row is not None and row.status is RecordingStatus.COMPLETE
    [stored] = list(server.settings.recording_dir.rglob(row.blob_key))
    original = stored.read_bytes()

    # Another region's key opens neither the stream key nor, with it, the video.
    west = await server.region("west")
    with pytest.raises(RecordIntegrityError):
        await app[SERVICES].keyring.open(Binding(west, KEY_KIND, row.id), row.key_sealed)
    key = await app[SERVICES].keyring.open(Binding(row.region_id, KEY_KIND, row.id), row.key_sealed)
    with pytest.raises(RecordIntegrityError), stored.open("rb") as file:
        list(open_stream(key, Binding(west, VIDEO_KIND, row.id), file.read))

    # A flipped bit, a truncated file, reordered chunks: integrity_error, audited.
    for change in (_flip_bit, _truncate, _swap_chunks):
        stored.write_bytes(change(original))
        response = await spes.request("GET", f"/api/recordings/{recording}")
        assert response.status == 500 and (await response.json())["error"]["code"] == "integrity_error"
    stored.write_bytes(original)
    async with app[SERVICES].database.sessions() as session:
        outcomes = (await session.scalars(
            select(AuditEvent.outcome).where(AuditEvent.resource == f"recording:{row.id}",
                                             AuditEvent.action == "recording.view")
        )).all()
    assert outcomes.count("integrity_error") == 3 and "ok" in outcomes

    # Crypto-shredding the region makes it unreadable.
    await app[SERVICES].keyring.shred(row.region_id)
    response = await spes.request("GET", f"/api/recordings/{recording}")
    assert response.status == 403  # a shredded region's roles are gone with it
    with pytest.raises(KeyShreddedError):
        await app[SERVICES].recordings.media(row)


async def test_recording_needs_consent_a_specialist_and_the_region(server: RunningServer) -> None:
    await server.add_user("nurse1", PASSWORD, {"east": StaffRole.NURSE})
    await server.add_user("spes", PASSWORD, {"east": StaffRole.SPECIALIST})
    await server.add_user("spes_west", PASSWORD, {"west": StaffRole.SPECIALIST})
    nurse, spes, west = ApiClient(server.url), ApiClient(server.url), ApiClient(server.url)
    try:
        for client, name in ((nurse, "nurse1"), (spes, "spes"), (west, "spes_west")):
            assert (await client.login(name, PASSWORD)).status == 200
        patient = await nurse.json("POST", "/api/patients", expect=201,
                                   json={"region": "east", "nationalId": NATIONAL_ID, "name": "Per Øst"})
        consultation = (await nurse.json("POST", "/api/consultations", expect=201, json={"patient": patient["id"]}))["id"]
        await nurse.json("POST", f"/api/consultations/{consultation}/consents", expect=201,
                         json={"video": True, "snapshots": True})
        refused = await spes.json("POST", f"/api/consultations/{consultation}/recordings", expect=409)
        assert refused["error"] == {"code": "no_consent",
                                    "message": "the patient has not consented to the video being recorded"}
        await nurse.json("POST", f"/api/consultations/{consultation}/consents", expect=201, json={"recording": True})
        await west.json("POST", f"/api/consultations/{consultation}/recordings", expect=404)
        await nurse.json("POST", f"/api/consultations/{consultation}/recordings", expect=403)
        started = await spes.json("POST", f"/api/consultations/{consultation}/recordings", expect=201)
        for path in (f"/api/recordings/{started['id']}", f"/api/consultations/{consultation}/recordings"):
            await nurse.json("GET", path, expect=403)
            await west.json("GET", path, expect=404)
        await west.json("POST", f"/api/recordings/{started['id']}/stop", expect=404)
        await spes.json("GET", f"/api/recordings/{started['id']}", expect=409)  # not complete yet

        # Withdrawing the consent stops it; nobody sent video, so nothing playable was kept.
        await nurse.json("POST", f"/api/consultations/{consultation}/consents", expect=201, json={"recording": False})
        [ended] = (await spes.json("GET", f"/api/consultations/{consultation}/recordings"))["recordings"]
        assert (ended["status"], ended["endReason"]) == ("failed", "no_video")
        assert [p for p in server.settings.recording_dir.rglob("*") if p.is_file()] == []
        async with server.app[SERVICES].database.sessions() as session:
            actions = (await session.scalars(
                select(AuditEvent.action).where(AuditEvent.resource == f"recording:{started['id']}"))).all()
        assert "recording.start" in actions and "recording.end.no_video" in actions
        await spes.json("POST", f"/api/recordings/{started['id']}/stop", expect=409)
    finally:
        for client in (nurse, spes, west):
            await client.close()


async def test_the_watcher_sees_plaintext_media_and_passes_sealed_blobs(tmp_path: Path) -> None:
    """The watcher above can fail: plaintext WebM, a raw frame and an MPEG-TS run are caught."""
    from av import VideoFrame

    from woundcare.camera.synthetic import SyntheticVideoTrack

    sealed = tmp_path / "recordings" / "ab"
    sealed.mkdir(parents=True)
    (sealed / "random").write_bytes(os.urandom(100_000))
    (tmp_path / "plain.webm").write_bytes(webm_part(3, (64, 48)))
    raw: VideoFrame = await SyntheticVideoTrack(320, 240).recv()
    (sealed / ".tmp-raw").write_bytes(bytes(raw.planes[0]))
    (tmp_path / "stream.ts").write_bytes(b"".join(b"\x47" + os.urandom(187) for _ in range(6)))
    watcher = Watcher(tmp_path, (tmp_path / "recordings",))
    watcher.start()
    while watcher.sweeps < 2:
        await asyncio.sleep(0.01)
    watcher.stop()
    assert sorted(set(watcher.violations)) == [
        ("EBML header", "plain.webm"),
        ("MPEG-TS sync", "stream.ts"),
        ("WebM/Matroska doc type", "plain.webm"),
        ("low entropy", "recordings/ab/.tmp-raw"),
    ]
