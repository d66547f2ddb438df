"""The head camera's telestration overlay (``woundcare camera --overlay``): how long one
change takes to reach the file, and how long the event loop waits meanwhile.

For 0, 10 and 100 strokes on a 1920x1080 frame (and frozen on a 1080p still), each round
changes the board and waits for :class:`~woundcare.camera.overlay.OverlayFile` to have
replaced the PNG: render (Pillow) plus write (``replace_with``: temporary file, fsync,
rename, directory fsync), in its worker thread. A 5 ms ticker on the loop measures how late
it runs meanwhile: the lag the video and the signaling socket would see.

    python -m bench.overlay [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageFilter

from woundcare.camera.overlay import OverlayFile
from woundcare.camera.telestration import Telestration

SIZE = (1920, 1080)


def stroke(index: int) -> dict[str, object]:
    y = (index % 97) / 97
    shapes = ("free", "arrow", "circle")
    points = [[x / 20, y] for x in range(1, 20)] if index % 3 == 0 else [[0.1, y], [0.6, min(1.0, y + 0.2)]]
    return {"type": "annotation", "op": "stroke", "id": f"s-{index}", "shape": shapes[index % 3],
            "points": points, "color": "#00E5FF"}


async def ticker(lags: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.005)
        lags.append(time.perf_counter() - start - 0.005)


async def measure(strokes: int, rounds: int, frozen: bool, folder: Path) -> tuple[list[float], list[float]]:
    telestration = Telestration()
    overlay = OverlayFile(folder / "overlay.png", SIZE, telestration.board)
    telestration.on_change.append(overlay.changed)
    task = asyncio.create_task(overlay.run())
    while overlay.written < 1:
        await asyncio.sleep(0.001)
    if frozen:
        still = io.BytesIO()
        # Noise, blurred a little: about as hard to compress as a photo of skin.
        Image.effect_noise(SIZE, 40).filter(ImageFilter.GaussianBlur(1.5)).convert("RGB").save(
            still, format="JPEG", quality=92
        )
        telestration.keep_still("r1", still.getvalue())
        telestration.receive({"type": "freeze", "on": True, "id": "f-1", "still": "r1"}, "spes")
    for index in range(strokes):
        telestration.receive({**stroke(index), "still": "r1" if frozen else None}, "spes")
    lags: list[float] = []
    stop = asyncio.Event()
    ticking = asyncio.create_task(ticker(lags, stop))
    times = []
    for round_ in range(rounds):
        written = overlay.written
        start = time.perf_counter()
        telestration.receive({"type": "annotation", "op": "pointer", "points": [[0.5, round_ / rounds]],
                              "still": "r1" if frozen else None}, "spes")
        while overlay.written == written:
            await asyncio.sleep(0.001)
        times.append(time.perf_counter() - start)
    stop.set()
    await ticking
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task  # it leaves the file empty
    return times, lags


def quantile(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def main(rounds: int) -> None:
    print(f"overlay {SIZE[0]}x{SIZE[1]}, {rounds} changes per row: change to file replaced; event loop lag (5 ms ticker)")
    print(f"{'board':>24} | {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} | {'lag p50':>7} {'lag p95':>7} {'lag max':>7}")
    with tempfile.TemporaryDirectory() as folder:  # warm up: imports, the worker threads
        await measure(1, 3, False, Path(folder))
    idle: list[float] = []
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(2.0, stop.set)
    await ticker(idle, stop)
    print(f"{'(no overlay: the floor)':>24} | {'':>7} {'':>7} {'':>7} | {statistics.median(idle) * 1e3:7.2f} "
          f"{quantile(idle, 0.95) * 1e3:7.2f} {max(idle) * 1e3:7.2f}")
    with tempfile.TemporaryDirectory() as folder:
        for strokes, frozen in ((0, False), (10, False), (100, False), (10, True)):
            times, lags = await measure(strokes, rounds, frozen, Path(folder))
            name = f"{strokes} strokes" + (", frozen still" if frozen else "")
            print(f"{name:>24} | {statistics.median(times) * 1e3:7.1f} {quantile(times, 0.95) * 1e3:7.1f} "
                  f"{max(times) * 1e3:7.1f} | {statistics.median(lags) * 1e3:7.2f} {quantile(lags, 0.95) * 1e3:7.2f} "
                  f"{max(lags) * 1e3:7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    asyncio.run(main(parser.parse_args().rounds))
