"""Specialist joins in real browsers: the click on Join to the first decoded video frame.

Two headless Chromiums (Debian's, driven by Playwright as in ``tests/e2e``), one real server
and a local coturn that the server hands out with ``iceTransportPolicy: relay``. A nurse page
(login, patient registration, consent, Start, as in ``tests/e2e/test_browser.py``) and a
``woundcare camera`` (aiortc, synthetic 1080p source, a device token, as in
``tests/camera``) wait in their consultations; the specialist's page joins one from the queue,
is timed, leaves and joins again. As a person's would, the pointer rests on the row's Join
``--dwell`` ms before the click (the page gets a join ready meanwhile). The span is measured in
the specialist's page: from the click on Join to the ``requestVideoFrameCallback`` of
``#remote-video``'s first frame (``presentationTime``).

Each source is joined in three settings:

``plain``
    as it is.
``ice+300ms``
    the specialist page's ``GET /api/ice-servers`` answered 300 ms late (Playwright routing).
``ws+50ms``
    the specialist page's ``/ws`` through a TCP delay relay (``tests.relay.tcp_delay``) that
    holds every chunk 50 ms in each direction; an init script points the page's WebSocket at it.

The floor: the same two browsers with no server, a minimal page (``bench/floor.html``) on
each, offer, answer and candidates handed between the pages by this script, relay only
through the same coturn; its span runs from the viewer's "join" to its first frame. It runs
as it is and with every handed message held 50 ms (beside ``ws+50ms``). All settings are
interleaved, one join of each per round, so the machine's noise falls on all of them.

    python -m bench.browser_join            # 50 joins per setting (about 30 minutes)
    python -m bench.browser_join --quick    # 3 joins per setting: a smoke run (tests/bench runs it)
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from aiohttp import web

from bench.common import free_port
from signaling.turn import ice_servers
from tests.camera.scene import REPO, Visit, home_visit
from tests.coturn import Coturn, running_coturn
from tests.e2e.browser import CHROMIUM, DESKTOP, FLAGS, PHONE, async_playwright
from tests.e2e.flows import PASSWORD, log_in
from tests.e2e.process import ServerProcess
from tests.relay import tcp_delay
from tests.server import RunningServer
from woundcare.config import Settings
from woundcare.db.models import StaffRole

JOINS = 50
QUICK_JOINS = 3
ICE_DELAY = 0.3
FRAME_DELAY = 0.05
"""Held in each direction on the specialist's socket: every frame to or from the page."""
JOIN_TIMEOUT = 40.0
"""A join with no frame by then counts as timed out (the stalls this bench was made for took 12-20 s)."""
UI_TIMEOUT_MS = 30_000
DWELL_MS = 300
"""How long the pointer rests on Join before the click: the row is crossed on the way and a
click is no instant jump, so a person's pointer is there at least this long; the page gets the
join's token and socket ready once the pointer enters the row (and for the queue's first entry
when it shows)."""
CAMERA_RESTART_SECONDS = 120.0
RELAY_PORTS = 1024
"""coturn's relay ports. A page that is reloaded leaves its TURN allocations to expire (10 min),
so hundreds of joins need far more than the tests' 16; with too few, allocations fail (508)
and joins stall on the bench, not on the code."""
TARGET_MAX = 3.0
TARGET_P95 = 1.5
TARGET_RATIO = 1.2
FLOOR_PAGE = Path(__file__).with_name("floor.html")
STEPS = ("microphone", "token", "socket", "open", "join", "joined", "offer", "answer", "connected", "dtls", "wire:joined", "wire:offer")
"""A join's steps, in the order they usually come, each timed from the click (the floor's from
its "join"): ``getUserMedia`` settled, the join token's answer, the WebSocket made and open,
the ``join`` frame sent, ``joined``, the camera's offer received, the answer sent, ICE
connected, DTLS done (the connection ``connected``; media may flow); then, on the wire (the
page's socket frames as DevTools saw them leave and arrive, from ``join`` leaving), ``joined``
and the offer arriving: the server's and the network's share, without the page's main thread.
Their medians show where a join's time goes against the floor's (which has only offer,
answer, connected and dtls). A token or socket the page got ready before the click has no
step: the median is over the joins that had one."""
NATIONAL_ID = "01018000055"
"""The browser nurse's patient (fictional; home_visit's camera patient has another)."""

# Chromium plays the remote video without a gesture, as the floor page has no click.
BENCH_FLAGS = (*FLAGS, "--autoplay-policy=no-user-gesture-required")

JOIN_PROBE = """
(() => {
  const join = { clickAt: null, frameAt: null, steps: {} };
  Object.defineProperty(window, '__benchJoin', { value: join });
  document.addEventListener('click', (event) => {
    if (event.target instanceof Element && event.target.closest('#queue-body button')) join.clickAt = performance.now();
  }, true);
  // The steps of a join (see STEPS), each the first time it happens after the click.
  const mark = (step) => { if (join.clickAt !== null) join.steps[step] ??= performance.now(); };
  const nativeFetch = window.fetch;
  window.fetch = async (input, init) => {
    const answer = await nativeFetch(input, init);
    if (String(input instanceof Request ? input.url : input).endsWith('/join-token')) mark('token');
    return answer;
  };
  const devices = navigator.mediaDevices;
  const nativeMedia = devices.getUserMedia.bind(devices);
  devices.getUserMedia = async (constraints) => {
    try { return await nativeMedia(constraints); } finally { mark('microphone'); }
  };
  const NativeSocket = window.WebSocket;
  window.WebSocket = class extends NativeSocket {
    constructor(...args) {
      super(...args);
      mark('socket');
      this.addEventListener('open', () => mark('open'));
      this.addEventListener('message', (event) => {
        const type = typeof event.data === 'string' && event.data.match(/"type":"(joined|offer)"/)?.[1];
        if (type) mark(type);
      });
    }

    send(data) {
      const type = typeof data === 'string' && data.match(/"type":"(join|answer)"/)?.[1];
      if (type) mark(type);
      super.send(data);
    }
  };
  const NativePeer = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends NativePeer {
    constructor(...args) {
      super(...args);
      this.addEventListener('iceconnectionstatechange', () => {
        if (['connected', 'completed'].includes(this.iceConnectionState)) mark('connected');
      });
      this.addEventListener('connectionstatechange', () => {
        if (this.connectionState === 'connected') mark('dtls');
      });
    }
  };
  document.addEventListener('DOMContentLoaded', () => {
    document.getElementById('remote-video')
      ?.requestVideoFrameCallback((now, frame) => { join.frameAt = frame.presentationTime; });
  });
})();
"""
"""The click on a queue row's Join and the first frame of the specialist's video, on the page's clock."""

WS_VIA = """
(() => {
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      const target = new URL(url, location.href);
      if (target.pathname === '/ws') target.port = '%d';
      super(target.href, protocols);
    }
  };
})();
"""
"""Send the page's /ws through the delay relay; every other request goes to the server directly."""


@dataclass(frozen=True, slots=True)
class Setting:
    key: str
    """The table's first column: the source, and the delay if any."""
    source: str
    delay: str
    floor: str
    """The key of the floor this setting is set beside."""


SETTINGS = (
    Setting("browser", "nurse page", "-", "floor"),
    Setting("browser/ice+300ms", "nurse page", "ICE-server fetch +300 ms", "floor"),
    Setting("browser/ws+50ms", "nurse page", "/ws +50 ms each way", "floor/msg+50ms"),
    Setting("camera", "woundcare camera", "-", "floor"),
    Setting("camera/ice+300ms", "woundcare camera", "ICE-server fetch +300 ms", "floor"),
    Setting("camera/ws+50ms", "woundcare camera", "/ws +50 ms each way", "floor/msg+50ms"),
    Setting("floor", "in-page, no server", "-", "floor"),
    Setting("floor/msg+50ms", "in-page, no server", "messages +50 ms", "floor/msg+50ms"),
)


class Join(NamedTuple):
    seconds: float
    """To the first frame; infinite when it timed out."""
    steps: dict[str, float]
    """Milliseconds from the start to each of :data:`STEPS` that happened."""


@dataclass(slots=True)
class Joins:
    setting: Setting
    seconds: list[float] = field(default_factory=list)
    """Timed-out joins count as infinite: they sort last and fail every target."""
    steps: list[dict[str, float]] = field(default_factory=list)

    def add(self, join: Join) -> None:
        self.seconds.append(join.seconds)
        self.steps.append(join.steps)

    def step_median(self, step: str) -> float | None:
        """The median of ``step`` over the joins that reached it (milliseconds), if any did."""
        times = [steps[step] for steps in self.steps if step in steps]
        return statistics.median(times) if times else None

    def percentile(self, q: float) -> float:
        """Nearest rank, so that a timed-out join is reported as one, never interpolated."""
        ordered = sorted(self.seconds)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]

    @property
    def median(self) -> float:
        return self.percentile(50)

    @property
    def worst(self) -> float:
        return max(self.seconds)

    @property
    def over_target(self) -> int:
        return sum(s > TARGET_MAX for s in self.seconds)


class ServedApart(ServerProcess):
    """``woundcare serve`` in a child process with the bench's settings, on the data the
    in-process server set up (its SQLite file, secret and keys): logged-in sessions and
    tokens stay valid across the move."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        super().__init__(
            data_dir=settings.data_dir, database_url=settings.db_url, instance="bench",
            port=settings.port, log_path=log_path,
        )
        assert settings.turn_secret is not None
        self.extra = {
            "WOUNDCARE_TURN_URLS": ",".join(settings.turn_urls),
            "WOUNDCARE_TURN_SECRET": settings.turn_secret.get_secret_value(),
            "WOUNDCARE_ICE_TRANSPORT_POLICY": settings.ice_transport_policy,
        }

    def environ(self) -> dict[str, str]:
        return {**super().environ(), **self.extra}


# --- the specialist's page -------------------------------------------------------------------


async def join_steps(page: Any, probe: str, start: str) -> dict[str, float]:
    """The steps the page's ``probe`` object noted, in milliseconds after its ``start``; also
    printed on stderr, one join a line."""
    steps: dict[str, float] = await page.evaluate(
        f"""() => Object.fromEntries(Object.entries(window.{probe}.steps)
          .map(([step, at]) => [step, at - window.{probe}.{start}]))"""
    )
    shown = ", ".join(f"{step} {steps[step]:.0f}" for step in STEPS if step in steps)
    print(f"    steps (ms): {shown}", file=sys.stderr, flush=True)
    return steps


async def specialist_join(page: Any, origin: str, consultation: str, dwell: float) -> Join:
    """Open the queue, rest the pointer on Join in ``consultation``'s row for ``dwell`` seconds,
    click, wait for the first frame, leave."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    await page.goto(origin + "/specialist")
    join = page.locator(f'#queue-body tr[data-consultation="{consultation}"] button')
    try:
        await join.hover()
    except PlaywrightTimeout:
        # Counted as timed out, with what the page showed instead (once, at load 26, the row did not show).
        shown = await page.evaluate(
            """() => ({status: document.getElementById('queue-status')?.textContent,
                rows: [...document.querySelectorAll('#queue-body tr')].map((row) => row.dataset.consultation),
                dialog: Boolean(document.querySelector('dialog[open]'))})"""
        )
        print(f"    the row did not show: {shown}", file=sys.stderr, flush=True)
        return Join(math.inf, {})
    await asyncio.sleep(dwell)
    wire = WIRES.get(page)
    if wire is not None:
        wire.clear()
    await join.click()
    try:
        await page.wait_for_function("() => window.__benchJoin.frameAt !== null", timeout=JOIN_TIMEOUT * 1000, polling=50)
        took = await page.evaluate("() => (window.__benchJoin.frameAt - window.__benchJoin.clickAt) / 1000")
    except PlaywrightTimeout:
        took = math.inf
    steps = await join_steps(page, "__benchJoin", "clickAt")
    if wire is not None:
        steps.update(wire.steps())
        print("    on the wire (ms after join left): " + ", ".join(f"{k} {v:.0f}" for k, v in wire.steps().items()), file=sys.stderr, flush=True)
    await page.click("#leave")
    try:
        await page.locator("#call-ended").wait_for(state="visible", timeout=LEAVE_TIMEOUT_MS)
    except PlaywrightTimeout:
        # The join was timed already; the next join loads the page afresh. Said, never hidden.
        errors = PAGE_ERRORS.pop(page, [])
        print(f"    the call did not end within {LEAVE_TIMEOUT_MS / 1000:g} s of Leave; page errors: {errors}",
              file=sys.stderr, flush=True)
        LEAVES_NOT_ENDED.append(page)
    return Join(float(took), steps)


async def specialist_page(browser: Any, origin: str, ice_delay: float = 0.0, ws_port: int | None = None) -> Any:
    """A logged-in specialist in a context of its own, with the join probe and the setting's delay."""
    # The page's CSP allows sockets to its own origin only: the delay relay's port is another
    # origin, so that one context is let past the policy (the server is unchanged).
    context = await browser.new_context(viewport=DESKTOP, locale="nb-NO", bypass_csp=ws_port is not None)
    await context.add_init_script(JOIN_PROBE)
    if ws_port is not None:
        await context.add_init_script(WS_VIA % ws_port)
    if ice_delay:
        async def late(route: Any) -> None:
            await asyncio.sleep(ice_delay)
            await route.continue_()

        await context.route("**/api/ice-servers", late)
    page = await context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    WIRES[page] = await Wire.watch(context, page)
    page.on("pageerror", lambda error: PAGE_ERRORS.setdefault(page, []).append(str(error)[:300]))
    await log_in(page, origin, "spesialist", "/specialist")
    return page


class Wire:
    """When the page's socket sent ``join`` and got ``joined`` on the wire (Chromium's network
    clock, through DevTools): the gap is the server and the network alone; the page's own
    ``join`` to ``joined`` adds the time its main thread took to get to the message."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @classmethod
    async def watch(cls, context: Any, page: Any) -> "Wire":
        wire = cls()
        session = await context.new_cdp_session(page)
        await session.send("Network.enable")
        session.on("Network.webSocketFrameSent", lambda event: wire.note(event, ("join",)))
        session.on("Network.webSocketFrameReceived", lambda event: wire.note(event, ("joined", "offer")))
        return wire

    def note(self, event: dict[str, Any], kinds: tuple[str, ...]) -> None:
        data = event["response"].get("payloadData", "")
        for kind in kinds:
            if f'"type":"{kind}"' in data or f'"type": "{kind}"' in data:
                self.times.setdefault(kind, event["timestamp"])

    def clear(self) -> None:
        self.times.clear()

    def steps(self) -> dict[str, float]:
        """``wire:joined`` and ``wire:offer``: milliseconds after ``join`` left, on the wire."""
        sent = self.times.get("join")
        if sent is None:
            return {}
        return {f"wire:{kind}": (self.times[kind] - sent) * 1000 for kind in ("joined", "offer") if kind in self.times}


WIRES: dict[Any, Wire] = {}
PAGE_ERRORS: dict[Any, list[str]] = {}
"""Uncaught errors on each specialist page, shown when a Leave does not end its call."""
LEAVES_NOT_ENDED: list[Any] = []
LEAVE_TIMEOUT_MS = 10_000


async def nurse_in_call(browser: Any, origin: str) -> Any:
    """The nurse page of tests/e2e/test_browser.py up to Start: waiting in its consultation."""
    context = await browser.new_context(viewport=PHONE, locale="nb-NO")
    nurse = await context.new_page()
    nurse.set_default_timeout(UI_TIMEOUT_MS)
    await log_in(nurse, origin, "sykepleier", "/nurse")
    await nurse.click("#register-toggle")
    await nurse.fill("#national-id", NATIONAL_ID)
    await nurse.fill("#patient-name", "Benk Pasient")
    await nurse.click("#register-form button[type=submit]")
    await nurse.check("#identity-confirmed")
    await nurse.check("#consent-form input[name=video]")
    await nurse.click("#start")
    await nurse.locator("#status[data-state=waiting]").wait_for()
    return nurse


async def camera_in_call(visit: Visit, origin: str) -> str:
    """``woundcare camera`` started for the visit's patient; its consultation, once queued."""
    visit.start_camera(origin, "--loopback-only")
    return await visit.find_consultation(60)


async def restart_camera(visit: Visit, origin: str, consultation: str) -> None:
    """Start the camera again after it exited, back into its consultation, so that one crash
    does not end the run; the log of the one that exited goes to stderr. Its old place in the
    room is held for the grace window (a new one is refused ``role_taken`` meanwhile), so this
    tries until one has joined."""
    print(f"  the camera exited with code {visit.camera and visit.camera.returncode}; its log's end:\n"
          + visit.camera_log()[-3000:], file=sys.stderr, flush=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "WOUNDCARE_DEVICE_TOKEN": visit.device_token}
    async with asyncio.timeout(CAMERA_RESTART_SECONDS):
        while True:
            with open(visit.log_path, "wb") as log_file:
                visit.camera = subprocess.Popen(
                    [sys.executable, "-m", "woundcare", "camera", "--server", origin, "--consultation", consultation,
                     "--source", "synthetic", "--queue-dir", str(visit.tmp_path / "queue"), "--loopback-only"],
                    cwd=visit.tmp_path, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                )
            while visit.camera.poll() is None and "joined as nurse" not in visit.camera_log():
                await asyncio.sleep(0.2)
            if visit.camera.poll() is None:
                return
            await asyncio.sleep(2)


# --- the floor -------------------------------------------------------------------------------


class FloorLink:
    """Hands each page's messages to the other, in order, each held ``delay`` seconds."""

    def __init__(self, nurse: Any, viewer: Any) -> None:
        self.delay = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._queues: dict[str, asyncio.Queue[tuple[float, Any]]] = {}
        for name, other in (("nurse", viewer), ("viewer", nurse)):
            queue: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
            self._queues[name] = queue
            self._tasks.append(asyncio.create_task(self._deliver(queue, other)))
        self.pages = {"nurse": nurse, "viewer": viewer}

    async def bind(self) -> None:
        for name, page in self.pages.items():
            queue = self._queues[name]
            await page.expose_binding(
                "benchSend", lambda source, message, queue=queue: queue.put_nowait((time.monotonic() + self.delay, message))
            )

    async def _deliver(self, queue: asyncio.Queue[tuple[float, Any]], target: Any) -> None:
        while True:
            due, message = await queue.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            with suppress(Exception):  # a page mid-reload misses what was meant for the old one
                await target.evaluate("(message) => window.benchReceive(message)", message)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@asynccontextmanager
async def floor_site() -> AsyncIterator[str]:
    """``bench/floor.html`` on a loopback port of its own (getUserMedia needs an http origin)."""
    page = FLOOR_PAGE.read_text()
    app = web.Application()
    app.router.add_get("/floor", lambda request: web.Response(text=page, content_type="text/html"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/floor"
    finally:
        await runner.cleanup()


async def floor_join(link: FloorLink, url: str, config: dict[str, Any], delay: float) -> Join:
    viewer = link.pages["viewer"]
    await viewer.goto(url + "?role=viewer")
    await viewer.evaluate("(config) => window.benchInit(config)", config)
    link.delay = delay
    await viewer.evaluate("() => window.benchBegin()")
    try:
        await viewer.wait_for_function("() => window.benchJoin.frameAt !== null", timeout=JOIN_TIMEOUT * 1000, polling=50)
        took = await viewer.evaluate("() => (window.benchJoin.frameAt - window.benchJoin.beganAt) / 1000")
    except Exception:
        took = math.inf
    link.delay = 0.0
    steps = await join_steps(viewer, "benchJoin", "beganAt")
    await link.pages["nurse"].evaluate("() => window.benchReceive({ type: 'leave' })")
    return Join(float(took), steps)


# --- the run ---------------------------------------------------------------------------------


def relay_config(turn: Coturn) -> dict[str, Any]:
    """What /api/ice-servers would hand out: coturn with fresh credentials, relay only."""
    return {
        "iceServers": ice_servers([], [turn.url], turn.secret.encode(), "bench-floor", 3600),
        "iceTransportPolicy": "relay",
    }


async def measure(
    joins: int, warmup: int, chosen: Sequence[Setting], dwell: float
) -> tuple[list[Joins], int]:
    """The ``chosen`` settings' join times, and how often the camera exited and was started again."""
    results = {setting.key: Joins(setting) for setting in chosen}
    async with AsyncExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="woundcare-bench-")))
        turn = await stack.enter_async_context(running_coturn(work / "coturn", relay_ports=RELAY_PORTS))
        settings = Settings(
            port=free_port(), data_dir=work / "server", database_url=None, demo=False,
            turn_urls=[turn.url], turn_secret=turn.secret, ice_transport_policy="relay",
        )
        # Set up in this process (users, a device, a patient), then served by a process of its
        # own, as in production: in this one its event loop would be shared with Playwright's
        # driver, whose traffic with two browsers delayed the server's answers by tens of ms.
        server = await RunningServer.start(settings)
        origin = server.url
        ws_port = free_port()
        await stack.enter_async_context(tcp_delay(("127.0.0.1", ws_port), ("127.0.0.1", settings.port), FRAME_DELAY))
        (work / "visit").mkdir()
        visit = await stack.enter_async_context(home_visit(server, work / "visit"))
        for username, role in (("sykepleier", StaffRole.NURSE), ("spesialist", StaffRole.SPECIALIST)):
            await server.add_user(username, PASSWORD, {"east": role})
        await server.stop()
        served = ServedApart(settings, work / "server.log")
        await served.start()
        stack.push_async_callback(served.terminate)
        floor_url = await stack.enter_async_context(floor_site())
        config = relay_config(turn)

        playwright = await stack.enter_async_context(async_playwright())
        browsers = []
        for _ in range(2):
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(BENCH_FLAGS), headless=True)
            stack.push_async_callback(browser.close)
            browsers.append(browser)
        nurse_browser, specialist_browser = browsers

        camera_consultation = await camera_in_call(visit, origin)
        nurse = await nurse_in_call(nurse_browser, origin)
        queue = (await visit.spes.json("GET", "/api/consultations/queue"))["consultations"]
        [nurse_consultation] = [c["id"] for c in queue if c["id"] != camera_consultation]
        pages = {
            "": await specialist_page(specialist_browser, origin),
            "ice+300ms": await specialist_page(specialist_browser, origin, ice_delay=ICE_DELAY),
            "ws+50ms": await specialist_page(specialist_browser, origin, ws_port=ws_port),
        }
        floor_nurse = await (await nurse_browser.new_context(viewport=PHONE)).new_page()
        floor_viewer = await (await specialist_browser.new_context(viewport=DESKTOP)).new_page()
        link = FloorLink(floor_nurse, floor_viewer)
        stack.push_async_callback(link.close)
        await link.bind()
        await floor_nurse.goto(floor_url + "?role=nurse")
        await floor_nurse.evaluate("(config) => window.benchInit(config)", config)

        def run(setting: Setting) -> Awaitable[Join]:
            if setting.key.startswith("floor"):
                return floor_join(link, floor_url, config, FRAME_DELAY if "msg" in setting.key else 0.0)
            consultation = nurse_consultation if setting.key.startswith("browser") else camera_consultation
            page = pages[setting.key.partition("/")[2]]
            return specialist_join(page, origin, consultation, dwell)

        camera_restarts = 0
        for round_ in range(warmup + joins):
            # Each round starts at another setting, so that none always follows the same one.
            shift = round_ % len(chosen)
            for setting in (*chosen[shift:], *chosen[:shift]):
                join = await run(setting)
                if visit.camera is not None and visit.camera.poll() is not None:
                    camera_restarts += 1
                    await restart_camera(visit, origin, camera_consultation)
                if round_ >= warmup:
                    results[setting.key].add(join)
                kind = "warm-up" if round_ < warmup else f"{round_ - warmup + 1}/{joins}"
                print(f"  {setting.key:<18} {kind:>7}  {join.seconds * 1000:9.0f} ms", file=sys.stderr, flush=True)
        del nurse
    return list(results.values()), camera_restarts


# --- the table -------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return "timeout" if math.isinf(seconds) else f"{seconds * 1000:.0f} ms"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def columns(rows: Sequence[tuple[str, ...]], left: int) -> list[str]:
    """``rows`` as aligned text: the first ``left`` columns to the left, the others to the right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
            for row in rows]


def step_table(results: list[Joins]) -> list[str]:
    """Each setting's median time to each step and to the first frame (the median join)."""
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    rows: list[tuple[str, ...]] = [("steps (median ms)", *STEPS, "frame")]
    rows += [(r.setting.key, *(ms(r.step_median(step)) for step in STEPS), _ms(r.median).removesuffix(" ms"))
             for r in results]
    return columns(rows, 1)


def render(
    results: list[Joins], camera_restarts: int, warmup: int, when: str, loads: tuple[str, str], dwell_ms: int
) -> str:
    by_key = {r.setting.key: r for r in results}
    header = ("setting", "source", "injected delay", "joins", "median", "p95", "max", "> 3 s", "floor median", "ratio")
    rows: list[tuple[str, ...]] = [header]
    verdicts = []
    for r in results:
        floor = by_key[r.setting.floor]
        ratio = r.median / floor.median
        is_floor = r.setting.key == r.setting.floor
        rows.append((
            r.setting.key, r.setting.source, r.setting.delay, str(len(r.seconds)), _ms(r.median),
            _ms(r.percentile(95)), _ms(r.worst), str(r.over_target),
            "-" if is_floor else _ms(floor.median), "-" if is_floor else f"{ratio:.2f}",
        ))
        if not is_floor:
            met = r.over_target == 0 and r.percentile(95) <= TARGET_P95 and ratio <= TARGET_RATIO
            missed = [name for name, ok in (
                ("a join over 3 s", r.over_target == 0),
                ("p95 over 1.5 s", r.percentile(95) <= TARGET_P95),
                (f"median over {TARGET_RATIO} x floor", ratio <= TARGET_RATIO),
            ) if not ok]
            verdicts.append(f"  {r.setting.key:<18} {'met' if met else 'NOT met: ' + ', '.join(missed)}")
    joins = len(results[0].seconds)
    lines = [
        f"specialist join -> first decoded frame (click on Join to requestVideoFrameCallback on the "
        f"specialist's video; the pointer on Join {dwell_ms} ms before the click), two Chromiums over coturn "
        f"(relay only), {joins} joins per setting (+{warmup} warm-up), interleaved; {when}, "
        f"load average {loads[0]} at the start, {loads[1]} at the end",
        "",
    ]
    lines += columns(rows, 3)
    if camera_restarts:
        lines += ["", f"the camera exited {camera_restarts} time(s) and was started again (its log is on stderr)"]
    if LEAVES_NOT_ENDED:
        lines += ["", f"{len(LEAVES_NOT_ENDED)} Leave click(s) did not end the call within {LEAVE_TIMEOUT_MS / 1000:g} s "
                  "(the joins count; the page was loaded afresh; see stderr)"]
    lines += ["", f"targets: no join over {TARGET_MAX:g} s, p95 <= {TARGET_P95:g} s, median <= {TARGET_RATIO} x its floor's", *verdicts]
    lines += ["", "where the time goes: ms from the click (the floor's: from its join) to each step, medians over the joins that reached it", *step_table(results)]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.browser_join", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_JOINS} joins per setting, no warm-up: a smoke run")
    parser.add_argument("--joins", type=int, help=f"measured joins per setting (default {JOINS})")
    parser.add_argument(
        "--settings", type=lambda text: text.split(","), default=[s.key for s in SETTINGS],
        help="comma-separated settings to run (default all); the floors they are set beside are added",
    )
    parser.add_argument(
        "--dwell", type=int, default=DWELL_MS, metavar="MS",
        help=f"how long the pointer rests on Join before the click (default {DWELL_MS}; 0: click as the row shows)",
    )
    args = parser.parse_args(argv)
    if args.joins is not None and args.joins < 1:
        parser.error("--joins must be at least 1")
    if args.dwell < 0:
        parser.error("--dwell must not be negative")
    known = {s.key: s for s in SETTINGS}
    if unknown := [key for key in args.settings if key not in known]:
        parser.error(f"--settings: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    wanted = {*args.settings, *(known[key].floor for key in args.settings)}
    args.settings = tuple(s for s in SETTINGS if s.key in wanted)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    joins = args.joins or (QUICK_JOINS if args.quick else JOINS)
    warmup = 0 if args.quick else 1
    start = load_average()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results, camera_restarts = asyncio.run(measure(joins, warmup, args.settings, args.dwell / 1000))
    print(render(results, camera_restarts, warmup, when, (start, load_average()), args.dwell))
    return 0


if __name__ == "__main__":
    sys.exit(main())
