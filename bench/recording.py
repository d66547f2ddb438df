"""What a recording costs: the camera's uplink, the server's CPU, /ws responsiveness, and
whether the recording keeps every frame the specialist saw.

One run, everything real: ``woundcare serve`` in its own process (SQLite), ``--calls``
``woundcare camera`` publishers (synthetic source, ``--width`` x ``--height``, loopback), each
in a consultation of its own with the patient's consent to recording, and the specialist's
page for each call in headless Chromium (Debian's, the house's flags), which records as the
product does (``MediaRecorder`` in the page, pieces uploaded and sealed on arrival, finished
by the server's worker process). A prober joined to a spare consultation pings ``/ws`` every
50 ms (WebSocket ping to pong: the server's event loop, as every relay sees it).

Phases of ``--seconds`` each, all calls live throughout: 1, 2 and ``--calls`` of the calls
recorded, each between two phases with none recorded (its base: their mean), repeated
``--rounds`` times, after a warm-up (one short recording starts the finishing worker; the
cameras' bitrate ramps up). The cameras and Chromium run at nice 10: in the pilot they are
the nurse's device and the specialist's computer, not the server's machine. Per phase:

- camera uplink, kbit/s: what the camera sent to the page (RTP bytes with headers received by
  the page, all tracks; loopback loses nothing). The camera sends one stream per viewer
  (the participants but the nurse), so the page's count of viewers is printed with it.
- server CPU, cores: utime + stime of the server and its descendants (the finishing worker
  included, also once replaced: reaped children count in their parent's cutime/cstime) from
  /proc, from the phase's start to the end of its recordings' finish, over that time;
  per recorded call: (phase - its base) / recordings.
- ``/ws`` ping p50/p99, ms.
- frames stored (counted by the server in the finished WebM) / frames the page decoded while
  it recorded (``getStats`` framesDecoded).
- passed through: recordings whose page stored the camera's VP8 frames as received (its
  ``MediaRecorder`` asked for no type: Chromium's passthrough) rather than encoding them.

    python -m bench.recording                  # 4 calls at 1280x720, 30 s phases, 2 rounds (~15 min)
    python -m bench.recording --quick          # 2 calls at 640x360, 6 s phases, 1 round (tests/bench)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import free_port
from tests.api.client import ApiClient
from tests.e2e.browser import PEER_TRACKER, async_playwright, launch
from tests.e2e.flows import log_in
from tests.e2e.process import REPO_ROOT, ServerProcess, child_environ, woundcare_cli

PASSWORD = "recording bench password"
PING_SECONDS = 0.05
WARM_SECONDS = 10.0
UI_MS = 60_000

RECEIVED = """
async () => {
  // Counted per connection and kept when it is closed (the camera's new connection after a
  // stall starts its counters at 0): the totals only grow.
  window.__seen ??= new Map();
  for (const pc of window.__testPeers || []) {
    let bytes = 0, frames = 0;
    try {
      for (const s of (await pc.getStats()).values()) {
        if (s.type !== 'inbound-rtp') continue;
        bytes += (s.bytesReceived || 0) + (s.headerBytesReceived || 0);
        if (s.kind === 'video') frames += s.framesDecoded || 0;
      }
    } catch { continue; }
    const last = window.__seen.get(pc) || { bytes: 0, frames: 0 };
    window.__seen.set(pc, { bytes: Math.max(bytes, last.bytes), frames: Math.max(frames, last.frames) });
  }
  let bytes = 0, frames = 0;
  for (const seen of window.__seen.values()) { bytes += seen.bytes; frames += seen.frames; }
  const viewers = document.querySelectorAll('#participants li').length - 1;
  return { bytes, frames, viewers, at: performance.now() };
}
"""


RECORDER_SPAN = """
(() => {
  // The frames the page decoded between its MediaRecorder's start and stop: what it recorded
  // (the bench's RECEIVED, kept by this page as __frames); and whether it encoded the video
  // (a type asked for) or passed the camera's frames through (none asked for).
  const { start, stop } = MediaRecorder.prototype;
  MediaRecorder.prototype.start = function (...args) {
    window.__recordedFrom = window.__frames();
    window.__passedThrough = !this.mimeType;
    return start.apply(this, args);
  };
  MediaRecorder.prototype.stop = function () { window.__recordedTo = window.__frames(); return stop.apply(this); };
})();
"""
SPAN = "async () => (await window.__recordedTo) - (await window.__recordedFrom)"


@dataclass
class Call:
    consultation: str
    page: Any
    camera: asyncio.subprocess.Process


@dataclass
class Phase:
    recorded: int
    uplink: list[float] = field(default_factory=list)
    """kbit/s of each call's camera, in call order; the first ``recorded`` calls were recorded."""
    viewers: set[int] = field(default_factory=set)
    cpu_cores: float = 0.0
    pings: list[float] = field(default_factory=list)
    stored: int = 0
    decoded: int = 0
    passed_through: int = 0
    """Recordings whose page stored the camera's frames as received (no type asked of its
    ``MediaRecorder``), rather than encoding them again."""


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found, changed = {root}, True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                changed = True
    return found - {root}


def lower_clients(server: int) -> None:
    """The cameras and Chromium (this process's other descendants) at nice 10: in the pilot they
    run on the nurse's device and the specialist's computer, not beside the server."""
    for pid in _descendants(os.getpid()) - _descendants(server) - {server}:
        with suppress(OSError):
            # Every thread: on Linux a nice value is a thread's (Chromium's encoders and
            # decoders run in threads started before this).
            for thread in os.listdir(f"/proc/{pid}/task"):
                with suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, int(thread), 10)


def tree_cpu_seconds(root: int) -> float:
    """utime + stime of ``root`` and every descendant alive, with their reaped children's."""
    total = 0
    for pid in _descendants(root) | {root}:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        total += sum(int(f) for f in stat[stat.rindex(")") + 2 :].split()[11:15])
    return total / os.sysconf("SC_CLK_TCK")


class Prober:
    """A socket in a spare consultation, pinging /ws and timing each pong."""

    def __init__(self, url: str, token: str, consultation: str) -> None:
        self._url, self._token, self._consultation = url, token, consultation
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Prober]:
        async with aiohttp.ClientSession() as session, session.ws_connect(
            self._url.replace("http", "ws", 1) + "/ws", autoping=False
        ) as ws:
            await ws.send_json({"type": "join", "v": 1, "consultation": self._consultation, "role": "specialist",
                                "token": self._token})
            self._task = asyncio.create_task(self._ping(ws))
            try:
                yield self
            finally:
                self._task.cancel()
                with suppress(asyncio.CancelledError):
                    await self._task

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            sent = time.perf_counter()
            await ws.ping()
            while (message := await ws.receive()).type is not aiohttp.WSMsgType.PONG:
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return
            self.samples.append((time.perf_counter() - sent) * 1000)
            await asyncio.sleep(PING_SECONDS)


async def prepare(server: ServerProcess, calls: int, workdir: Path) -> tuple[ApiClient, list[str], str, list[str]]:
    """Users, devices, patients; returns the specialist's client, device tokens, a spare
    consultation for the prober and the patients of the calls."""
    admin_env = child_environ({"WOUNDCARE_DATA_DIR": str(server.data_dir), "WOUNDCARE_DATABASE_URL": server.database_url,
                               "WOUNDCARE_NEW_PASSWORD": PASSWORD})
    await woundcare_cli("db", "upgrade", environ=admin_env)
    await woundcare_cli("region", "add", "east", "East", environ=admin_env)
    for name, role in (("nurse", "nurse"), ("spes", "specialist"), ("admin", "admin")):
        await woundcare_cli("user", "add", name, "--name", name, "--role", role, "--region", "east", environ=admin_env)
    await server.start()
    admin, nurse, spes = ApiClient(server.url), ApiClient(server.url), ApiClient(server.url)
    for client, name in ((admin, "admin"), (nurse, "nurse"), (spes, "spes")):
        assert (await client.login(name, PASSWORD)).status == 200
    tokens, patients = [], []
    for i in range(calls + 1):
        patient = await nurse.json("POST", "/api/patients", expect=201,
                                   json={"region": "east", "nationalId": _national_id(i), "name": f"Bench {i}"})
        patients.append(patient["id"])
    for i in range(calls):
        device = await admin.json("POST", "/api/devices", expect=201, json={"region": "east", "user": "nurse", "name": f"cam {i}"})
        tokens.append(device["token"])
    spare = (await nurse.json("POST", "/api/consultations", expect=201, json={"patient": patients[-1]}))["id"]
    await admin.close()
    await nurse.close()
    return spes, tokens, spare, patients[:-1]


def _national_id(i: int) -> str:
    """A valid Norwegian test number (mod-11 check digits) for patient ``i``."""
    for serial in range(100 + i * 7, 1000):
        base = f"010180{serial:03d}"
        d = [int(c) for c in base]
        k1 = 11 - sum(w * x for w, x in zip((3, 7, 6, 1, 8, 9, 4, 5, 2), d, strict=True)) % 11
        k1 = 0 if k1 == 11 else k1
        if k1 == 10:
            continue
        d.append(k1)
        k2 = 11 - sum(w * x for w, x in zip((5, 4, 3, 2, 7, 6, 5, 4, 3, 2), d, strict=True)) % 11
        k2 = 0 if k2 == 11 else k2
        if k2 == 10:
            continue
        return base + f"{k1}{k2}"
    raise ValueError(i)


async def start_camera(server: ServerProcess, token: str, patient: str, size: tuple[int, int], workdir: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "WOUNDCARE_DEVICE_TOKEN": token}
    log = open(workdir / f"camera-{patient}.log", "ab")  # noqa: SIM115 (the process keeps it)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "woundcare", "camera", "--server", server.url, f"--patient={patient}",
        "--consent", "video,recording", "--source", "synthetic", "--width", str(size[0]), "--height", str(size[1]),
        "--loopback-only", "--queue-dir", str(workdir / f"queue-{patient}"),
        cwd=workdir, env=env, stdout=log, stderr=log,
    )


async def consultation_of(spes: ApiClient, seen: set[str]) -> str:
    while True:
        for entry in (await spes.json("GET", "/api/consultations/queue"))["consultations"]:
            if entry["id"] not in seen:
                seen.add(entry["id"])
                return str(entry["id"])
        await asyncio.sleep(0.2)


async def received(page: Any) -> dict[str, float]:
    result: dict[str, float] = await page.evaluate(RECEIVED)
    return result


async def run_phase(calls: list[Call], recorded: int, seconds: float, spes: ApiClient, server: ServerProcess,
                    prober: Prober) -> Phase:
    phase = Phase(recorded)
    lower_clients(server.pid)  # Chromium starts processes as it goes
    chosen = calls[:recorded]
    for call in chosen:
        await call.page.click("#recording-toggle")
    for call in chosen:
        await call.page.wait_for_function(
            "() => document.getElementById('recording-toggle').getAttribute('aria-pressed') === 'true'", timeout=UI_MS)
    await asyncio.sleep(1.5)  # the parts begun and the first pieces sent
    before = [await received(c.page) for c in calls]
    cpu_before, started = tree_cpu_seconds(server.pid), time.monotonic()
    pings_from = len(prober.samples)
    await asyncio.sleep(seconds)
    after = [await received(c.page) for c in calls]
    phase.pings = prober.samples[pings_from:]
    for i, call in enumerate(calls):
        kbit = (after[i]["bytes"] - before[i]["bytes"]) * 8 / (after[i]["at"] - before[i]["at"])
        phase.uplink.append(kbit)
        phase.viewers.add(int(after[i]["viewers"]))
    for call in chosen:
        await call.page.click("#recording-toggle")
    for call in chosen:
        await call.page.wait_for_function(
            "() => document.getElementById('recording-toggle').getAttribute('aria-pressed') === 'false'", timeout=UI_MS)
    elapsed = time.monotonic() - started
    phase.cpu_cores = (tree_cpu_seconds(server.pid) - cpu_before) / elapsed
    for call in chosen:
        listed = (await spes.json("GET", f"/api/consultations/{call.consultation}/recordings"))["recordings"]
        last = listed[-1]
        assert last["status"] == "complete", last
        phase.stored += int(last["frames"])
        phase.decoded += int(await call.page.evaluate(SPAN))
        phase.passed_through += bool(await call.page.evaluate("() => window.__passedThrough"))
    return phase


async def measure(calls_n: int, size: tuple[int, int], seconds: float, rounds: int) -> list[Phase]:
    workdir = Path(tempfile.mkdtemp(prefix="woundcare-recording-bench-"))
    server = ServerProcess(data_dir=workdir / "data", database_url=f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
                           instance=f"bench-{secrets.token_hex(3)}", port=free_port(), log_path=workdir / "server.log")
    phases: list[Phase] = []
    async with AsyncExitStack() as stack:
        stack.push_async_callback(server.kill)
        spes, tokens, spare, patients = await prepare(server, calls_n, workdir)
        stack.push_async_callback(spes.close)
        cameras, seen, consultations = [], {spare}, []
        for token, patient in zip(tokens, patients, strict=True):
            camera = await start_camera(server, token, patient, size, workdir)
            cameras.append(camera)
            stack.push_async_callback(_stop, camera)
            consultations.append(await asyncio.wait_for(consultation_of(spes, seen), 60))
        playwright = await stack.enter_async_context(async_playwright())
        browser = await launch(playwright)
        stack.push_async_callback(browser.close)
        context = await browser.new_context(locale="en-GB")
        await context.add_init_script(PEER_TRACKER)
        await context.add_init_script(f"window.__frames = async () => (await ({RECEIVED})()).frames;")
        await context.add_init_script(RECORDER_SPAN)
        calls = []
        for i, (consultation, camera) in enumerate(zip(consultations, cameras, strict=True)):
            page = await context.new_page()
            page.set_default_timeout(UI_MS)
            if i == 0:
                await log_in(page, server.url, "spes", "/specialist", password=PASSWORD)
            else:
                await page.goto(server.url + "/specialist")
            await page.locator(f"#queue-body tr[data-consultation='{consultation}'] button").click()
            await page.wait_for_function(
                "() => document.getElementById('remote-video').readyState >= 2", timeout=UI_MS)
            await page.wait_for_function("() => !document.getElementById('recording-toggle').hidden", timeout=UI_MS)
            calls.append(Call(consultation, page, camera))
        token = (await spes.json("POST", f"/api/consultations/{spare}/join-token"))["token"]
        async with Prober(server.url, token, spare).running() as prober:
            # Warm: the cameras' bitrate ramped up, the finishing worker started (once per server).
            await run_phase(calls, 1, 2.0, spes, server, prober)
            await asyncio.sleep(WARM_SECONDS)
            levels = sorted({1, min(2, calls_n), calls_n})
            # Each recorded phase between two unrecorded ones, its base their mean: a drift
            # (the cameras' bitrate, the machine's other load) falls on both sides alike.
            phases.append(await run_phase(calls, 0, seconds, spes, server, prober))
            for _ in range(rounds):
                for level in levels:
                    for recorded in (level, 0):
                        phases.append(await run_phase(calls, recorded, seconds, spes, server, prober))
                    print(f"  {level} recorded: {_row(phases[-2], _base(phases, len(phases) - 2))}", flush=True)
    return phases


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _uplink_ratios(phase: Phase, base: Phase) -> list[float]:
    """Each recorded call's camera uplink over the same camera's in the unrecorded phase."""
    return [phase.uplink[i] / base.uplink[i] for i in range(phase.recorded)]


def _base(phases: list[Phase], at: int) -> Phase:
    """The unrecorded phases before and after ``phases[at]``, averaged."""
    before, after = phases[at - 1], phases[at + 1]
    mean = Phase(0, [(x + y) / 2 for x, y in zip(before.uplink, after.uplink, strict=True)])
    mean.cpu_cores = (before.cpu_cores + after.cpu_cores) / 2
    mean.pings = before.pings + after.pings
    return mean


def _row(phase: Phase, base: Phase) -> str:
    per_call = (phase.cpu_cores - base.cpu_cores) / phase.recorded
    kept = phase.stored / phase.decoded if phase.decoded else float("nan")
    ratios = _uplink_ratios(phase, base)
    return (f"uplink kbit/s {[round(u) for u in phase.uplink]} (recorded / same camera unrecorded "
            f"{[round(r, 2) for r in ratios]}), viewers/camera {sorted(phase.viewers)}, "
            f"server {phase.cpu_cores:.3f} cores ({per_call:+.3f}/recorded call), "
            f"/ws ping p50 {_p(phase.pings, 0.5):.1f} p99 {_p(phase.pings, 0.99):.1f} ms "
            f"(unrecorded {_p(base.pings, 0.99):.1f}), frames stored/decoded {phase.stored}/{phase.decoded} ({kept:.1%}), "
            f"video passed through {phase.passed_through}/{phase.recorded}")


def render(phases: list[Phase], calls: int, size: tuple[int, int], seconds: float) -> str:
    pairs = [(phases[j], _base(phases, j)) for j in range(len(phases)) if phases[j].recorded]
    levels = sorted({p.recorded for p, _ in pairs})
    rounds = len(pairs) // len(levels)
    lines = [f"{calls} calls at {size[0]}x{size[1]}, {seconds:.0f} s phases, {rounds} round(s); "
             f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min)",
             f"{'recorded':>8} | {'uplink kbit/s':>13} | {'vs unrecorded':>13} | {'server cores':>12} | "
             f"{'per rec. call':>13} | {'/ws p50/p99 ms':>14} | {'p99 vs none':>11} | {'frames stored':>13} | "
             f"{'passed through':>14}"]
    unrecorded = [p for p in phases if not p.recorded]
    lines.append(
        f"{0:>8} | {statistics.median(u for p in unrecorded for u in p.uplink):>13.0f} | {'':>13} | "
        f"{statistics.median(p.cpu_cores for p in unrecorded):>12.3f} | {'':>13} | "
        f"{statistics.median(_p(p.pings, 0.5) for p in unrecorded):>6.1f} / "
        f"{statistics.median(_p(p.pings, 0.99) for p in unrecorded):>5.1f} | {'':>11} | {'':>13} | {'':>14}"
    )
    for level in levels:
        group = [(p, base) for p, base in pairs if p.recorded == level]
        ratios = [x for p, base in group for x in _uplink_ratios(p, base)]
        uplink = [p.uplink[i] for p, _ in group for i in range(level)]
        per_call = statistics.median((p.cpu_cores - base.cpu_cores) / level for p, base in group)
        p99_ratio = statistics.median(_p(p.pings, 0.99) / _p(base.pings, 0.99) for p, base in group)
        stored, decoded = sum(p.stored for p, _ in group), sum(p.decoded for p, _ in group)
        passed = f"{sum(p.passed_through for p, _ in group)}/{sum(p.recorded for p, _ in group)}"
        lines.append(
            f"{level:>8} | {statistics.median(uplink):>13.0f} | {statistics.median(ratios):>12.2f}x | "
            f"{statistics.median(p.cpu_cores for p, _ in group):>12.3f} | {per_call:>13.3f} | "
            f"{statistics.median(_p(p.pings, 0.5) for p, _ in group):>6.1f} / "
            f"{statistics.median(_p(p.pings, 0.99) for p, _ in group):>5.1f} | {p99_ratio:>10.2f}x | "
            f"{(stored / decoded if decoded else float('nan')):>12.1%} | {passed:>14}"
        )
    lines.append("targets: uplink recorded <= 1.1x the same camera unrecorded; <= 0.05 cores per recorded call; "
                 f"/ws p99 with {max(levels)} recorded <= 1.5x the unrecorded beside it; frames stored >= 95 % of "
                 "frames decoded")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 calls at 640x360, 6 s phases, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.width, args.height, args.seconds, args.rounds = 2, 640, 360, 6.0, 1
    size = (args.width, args.height)
    phases = asyncio.run(measure(args.calls, size, args.seconds, args.rounds))
    print(render(phases, args.calls, size, args.seconds))


if __name__ == "__main__":
    main()
