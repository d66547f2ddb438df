"""Telestration latency in real browsers: pointer-up on the specialist's page to paint on the nurse's.

A live call as ``tests/e2e`` makes it (``tests.e2e.flows.call_in_two_browsers``): two headless
Chromiums, a real server, media relayed through a local coturn only. The specialist's page
draws short free strokes on the live video, one at a time; each is timed from the stroke's
``pointerup`` (the event's ``timeStamp``) on the specialist's page to the nurse's overlay
canvas's first ``painted`` event naming the stroke's id (``web/js/telestration.js``: fired
from the animation frame that drew it). Both are page clocks, ``performance.timeOrigin`` plus
the page's time; the offset between the two pages' clocks is measured by this script
(each page's clock read between two readings of the script's own, the narrowest of 20
bracketings) and taken off.

Two paths, each in a call of its own (a closed channel does not open again in its call), one
after the other:

``data channel``
    the "telestration" RTCDataChannel on the camera's peer connection (the signaling copy
    goes too, and comes second).
``signaling``
    the specialist's channel closed (an init script keeps the page's data channels so this
    script can close them), so only the signaling frame through the server carries the stroke.

Every ``BLOCK`` strokes the specialist clears the drawing, so the overlay never fills up.

    python -m bench.annotation_latency            # 100 strokes per path
    python -m bench.annotation_latency --quick    # 5 strokes per path: a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from bench.common import free_port
from tests.e2e.flows import Call, call_in_two_browsers
from tests.server import RunningServer
from woundcare.config import Settings

STROKES = 100
QUICK_STROKES = 5
BLOCK = 10
"""Strokes drawn before the specialist clears the drawing."""
TARGET_P95_MS = 150.0
PAINT_TIMEOUT_S = 5.0

# The specialist's page: every pointer-up's time, and every data channel the page makes.
SPECIALIST_PROBE = """
(() => {
  const ups = [];
  const channels = [];
  Object.defineProperty(window, '__benchUps', { value: ups });
  Object.defineProperty(window, '__benchChannels', { value: channels });
  document.addEventListener('pointerup', (event) => ups.push(performance.timeOrigin + event.timeStamp), true);
  const create = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (...args) {
    const channel = create.apply(this, args);
    channels.push(channel);
    return channel;
  };
})();
"""

# The nurse's page: when each stroke id was first painted on her overlay.
NURSE_PROBE = """
(() => {
  const painted = new Map();
  Object.defineProperty(window, '__benchPainted', { value: painted });
  document.addEventListener('painted', (event) => {
    const now = performance.timeOrigin + performance.now();
    for (const id of event.detail.ids) if (!painted.has(id)) painted.set(id, now);
  }, true);
})();
"""

CLOCK = "performance.timeOrigin + performance.now()"

# Messages the nurse's page took off its telestration channels: none on the signaling path.
CHANNEL_RECEIVED = """
async () => {
  let received = 0;
  for (const pc of window.__testPeers) {
    for (const s of (await pc.getStats()).values()) {
      if (s.type === 'data-channel' && s.label === 'telestration') received += s.messagesReceived || 0;
    }
  }
  return received;
}
"""


async def clock_offset(nurse: Any, specialist: Any) -> float:
    """The nurse's page clock minus the specialist's, in ms: each page's clock against this
    process's wall clock, the narrowest of 20 round trips for each."""
    async def against_wall(page: Any) -> float:
        best = (math.inf, 0.0)
        for _ in range(20):
            before = time.time() * 1000
            seen = await page.evaluate(CLOCK)
            after = time.time() * 1000
            best = min(best, (after - before, seen - (before + after) / 2))
        return best[1]

    return await against_wall(nurse) - await against_wall(specialist)


async def stroke_on(call: Call, rng: random.Random) -> float:
    """One short free stroke on the specialist's live video; its latency in ms (clock offset not yet taken off)."""
    nurse, specialist = call.nurse, call.specialist
    box = await specialist.locator("#telestration").bounding_box()
    assert box, "the specialist's overlay is not on screen"
    x = box["x"] + box["width"] * rng.uniform(0.3, 0.7)
    y = box["y"] + box["height"] * rng.uniform(0.2, 0.8)
    known = await nurse.evaluate("window.__benchPainted.size")
    ups = await specialist.evaluate("window.__benchUps.length")
    await specialist.mouse.move(x, y)
    await specialist.mouse.down()
    for step in range(1, 4):
        await specialist.mouse.move(x + 8 * step, y + 3 * step)
    await specialist.mouse.up()
    deadline = time.monotonic() + PAINT_TIMEOUT_S
    while await nurse.evaluate("window.__benchPainted.size") == known:
        if time.monotonic() > deadline:
            raise TimeoutError("the nurse's page did not paint the stroke")
        await asyncio.sleep(0.02)
    up = await specialist.evaluate(f"window.__benchUps[{ups}]")
    painted = await nurse.evaluate("[...window.__benchPainted.values()].at(-1)")
    return float(painted - up)


@asynccontextmanager
async def bench_call(work: Path, name: str) -> AsyncIterator[Call]:
    servers: list[RunningServer] = []

    async def start_server(**overrides: Any) -> RunningServer:
        settings = Settings(port=free_port(), data_dir=work / name / "server", database_url=None, demo=False, **overrides)
        server = await RunningServer.start(settings)
        servers.append(server)
        return server

    try:
        async with call_in_two_browsers(
            start_server, work / name, nurse_script=NURSE_PROBE, specialist_script=SPECIALIST_PROBE,
        ) as call:
            await call.specialist.locator("#remote-video").scroll_into_view_if_needed()
            yield call
    finally:
        for server in servers:
            await server.stop()


async def measure(strokes: int) -> dict[str, list[float]]:
    """Each path's latencies in ms, offset taken off."""
    rng = random.Random(17)
    results: dict[str, list[float]] = {"data channel": [], "signaling": []}
    async with AsyncExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="woundcare-bench-")))
        # One call at a time: two at once would share the machine's two cores.
        for path in results:
            async with bench_call(work, path.replace(" ", "-")) as call:
                if path == "signaling":
                    await call.specialist.evaluate("window.__benchChannels.forEach((c) => c.close())")
                else:
                    await call.specialist.wait_for_function(
                        "window.__benchChannels.some((c) => c.readyState === 'open')", timeout=15_000)
                offset = await clock_offset(call.nurse, call.specialist)
                print(f"  {path}: the nurse's page clock is {offset:+.2f} ms from the specialist's", file=sys.stderr)
                for k in range(strokes):
                    if k and k % BLOCK == 0:
                        await call.specialist.click("#draw-clear")
                    latency = await stroke_on(call, rng) - offset
                    results[path].append(latency)
                    print(f"  {path:<12} {k + 1:>3}/{strokes}  {latency:7.1f} ms", file=sys.stderr, flush=True)
                    await asyncio.sleep(0.1)
                received = await call.nurse.evaluate(CHANNEL_RECEIVED)
                print(f"  {path}: {received} messages came over the nurse's telestration channel", file=sys.stderr)
                assert (received > 0) == (path == "data channel"), f"{path}: {received} messages on the channel"
                assert not call.page_errors, call.page_errors
    return results


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


def render(results: dict[str, list[float]], when: str, loads: tuple[str, str]) -> str:
    lines = [
        f"telestration: pointer-up on the specialist's page to paint on the nurse's, two Chromiums over coturn "
        f"(relay only), {len(next(iter(results.values())))} strokes per path; {when}, "
        f"load average {loads[0]} at the start, {loads[1]} at the end",
        "",
        f"{'path':<14}{'strokes':>8}{'p50':>10}{'p95':>10}{'max':>10}",
    ]
    verdicts = []
    for path, values in results.items():
        p95 = percentile(values, 95)
        lines.append(f"{path:<14}{len(values):>8}{statistics.median(values):>7.0f} ms{p95:>7.0f} ms{max(values):>7.0f} ms")
        verdicts.append(f"  {path:<12} {'met' if p95 <= TARGET_P95_MS else 'NOT met'} (p95 {p95:.0f} ms)")
    lines += ["", f"target: p95 <= {TARGET_P95_MS:.0f} ms", *verdicts]
    return "\n".join(lines)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.annotation_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--strokes", type=int, default=None, help=f"strokes per path (default {STROKES})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STROKES} strokes per path")
    args = parser.parse_args(argv)
    strokes = args.strokes or (QUICK_STROKES if args.quick else STROKES)
    start = load_average()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = asyncio.run(measure(strokes))
    print(render(results, when, (start, load_average())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
