"""Clinical photos through the whole HTTP path, beside what the work itself costs (issue 20).

A specialist asks for a snapshot on ``/ws``; the nurse's socket hears the ``snapshot_request``
and her phone uploads the photo (``POST /api/consultations/{id}/snapshots``, a raw
``image/jpeg`` body with ``?request=<id>``); the specialist's socket hears ``snapshot_stored``
for it. One snapshot is timed from the ask to that frame. ``concurrency`` asks are in flight
at once. The photos are camera-like: 4000x3000, about 5 MB at quality 95 (sensor noise), with
EXIF (camera, description), GPS and XMP.

The server is ``woundcare serve`` in a child process (set up in this one first: users, a
patient, a consultation with consent), so its CPU is its own: read from ``/proc/<pid>/stat``
(with its descendants') around each run and divided by the snapshots stored. Sides,
interleaved round by round:

``ingest`` (SQLite, PostgreSQL) at concurrency 1 and 4
    snapshots/s, server CPU per snapshot, p50/p99 ask-to-stored.
``work floor``
    The minimal work per photo in this (plain) process, ``concurrency`` threads: a
    reduced-size decode (``draft``, 1/8) that reads every byte, the metadata strip at the
    marker level (``woundcare.records.jpeg``), a 320-px thumbnail encoded, AES-256-GCM of the
    photo, written to a new file, fsync'd and its pages dropped from the page cache, as the
    server's blob store does. No HTTP, no database, no audit.
``storage floor``
    AES-256-GCM, write, fsync and drop the pages only (``bench.storage``'s floor).
``bare receiver``
    The same photos posted at the same concurrency to ``bench.bare_relay`` (its own process,
    aiohttp on uvloop, which reads each body as it arrives and drops it), paced at the rate the
    woundcare sides reached in the same round: what taking the bodies in costs any aiohttp
    server, its CPU per upload and its ``/ws`` ping beside woundcare's.

While a run goes, another specialist's socket, in a process of its own (this one is busy
uploading), sends a WebSocket ping every 20 ms and times the pong, which the server answers on
its event loop; its p99 during ingest is printed beside the same figure measured idle just
before. The work floor's CPU per photo (this process's, while only the floor runs) is printed
beside the server's.

    python -m bench.ingest [--rounds 3] [--snapshots 40] [--postgres DSN | --no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from PIL import ExifTags, Image

from bench.common import free_port, postgres_database
from bench.load_servers import RunningProcess, start_bare
from bench.storage import DEFAULT_POSTGRES, _floor_one
from tests.api.client import ApiClient
from tests.e2e.process import ServerProcess
from tests.server import RunningServer
from woundcare.config import Settings
from woundcare.db.models import StaffRole
from woundcare.records.jpeg import strip_metadata

WIDTH, HEIGHT = 4000, 3000
QUALITY = 95
PHOTOS = 3
"""Distinct photos, used in turn."""
CONCURRENCIES = (1, 4)
WARMUP = 4
PING_EVERY = 0.02
IDLE_PING_SECONDS = 2.0
THUMB_SIDE = 320
PASSWORD = "ingest bench password"
TICKS = os.sysconf("SC_CLK_TCK")

TARGET_RATE = 20.0
TARGET_CPU = 0.09
TARGET_FLOOR_SHARE = 0.8
TARGET_PING_GROWTH = 2.0
BARE = "bare receiver"


def camera_jpeg(seed: int) -> bytes:
    """A 4000x3000 photo of about 5 MB as a phone writes it: noise, EXIF with GPS, XMP."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(60, 200, size=(HEIGHT // 200, WIDTH // 200, 3)).astype(np.uint8)
    colour = np.asarray(Image.fromarray(small).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC), dtype=np.int16)
    noise = rng.normal(0, 9, size=(HEIGHT, WIDTH, 3)).astype(np.int16)
    pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "BenchCam"
    exif[ExifTags.Base.ImageDescription] = "bench photo"
    exif[ExifTags.Base.Orientation] = 1 + seed % 8
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (59.0, 54.0, 48.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (10.0, 45.0, 36.0)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>' + b" " * 4000
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=QUALITY, exif=exif, xmp=xmp)
    return out.getvalue()


# --- floors ----------------------------------------------------------------------------------


def _work_one(key: bytes, data: bytes, path: Path) -> None:
    header = Image.open(io.BytesIO(data))
    orientation = header.getexif().get(ExifTags.Base.Orientation, 1)
    stripped = strip_metadata(data, orientation)
    picture = Image.open(io.BytesIO(stripped))
    picture.draft("RGB", (picture.width // 8, picture.height // 8))
    picture.load()
    picture.thumbnail((THUMB_SIDE, THUMB_SIDE))
    with tempfile.TemporaryFile() as thumb:
        picture.save(thumb, "JPEG", quality=85)
    _floor_one(key, stripped, path)


def floor_run(directory: Path, photos: Sequence[bytes], count: int, concurrency: int, work: bool) -> tuple[float, float]:
    """Seconds for ``count`` photos, ``concurrency`` threads at a time, and this process's CPU
    seconds meanwhile."""
    key = AESGCM.generate_key(bit_length=256)
    jobs = [(photos[i % len(photos)], directory / secrets.token_hex(12)) for i in range(count)]
    one = _work_one if work else _floor_one
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        started, cpu = time.perf_counter(), time.process_time()
        for _ in pool.map(lambda job: one(key, *job), jobs):
            pass
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    for _, path in jobs:
        path.unlink()
    return elapsed, cpu


# --- the served side -------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants, live or reaped: work a server hands to a
    child process (the recording's finisher, a worker pool) is the server's CPU too."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    children: dict[int, list[int]] = {}
    for child, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(child)  # ppid
    ticks, todo = 0, [pid]
    while todo:
        process = todo.pop()
        fields = stats[process]
        # utime, stime, cutime, cstime: a reaped child's CPU is in its parent's cutime/cstime
        ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        todo.extend(children.get(process, []))
    return ticks / TICKS


@dataclass
class Ward:
    """A served woundcare with a consultation: the nurse's phone (HTTP) and socket, and two
    specialist sockets (one asks, one pings)."""

    name: str
    served: ServerProcess
    consultation: str
    nurse: ApiClient
    session: aiohttp.ClientSession
    asker: aiohttp.ClientWebSocketResponse | None = None
    nurse_ws: aiohttp.ClientWebSocketResponse | None = None
    pinger: Pinger | None = None
    waiting: dict[str, asyncio.Future[float]] = field(default_factory=dict)
    photos: Sequence[bytes] = ()
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        process = self.served._process
        assert process is not None
        return process.pid

    async def join(self, specialists: Sequence[ApiClient]) -> None:
        asker, pinger = specialists
        self.asker = await self._joined(asker, "specialist")
        self.nurse_ws = await self._joined(self.nurse, "nurse")
        token = (await pinger.json("POST", f"/api/consultations/{self.consultation}/join-token"))["token"]
        self.pinger = await Pinger.start(self.served.url, self.consultation, token)
        self._tasks = [asyncio.create_task(self._hear_asks()), asyncio.create_task(self._hear_stored())]

    async def _joined(self, client: ApiClient, role: str) -> aiohttp.ClientWebSocketResponse:
        token = (await client.json("POST", f"/api/consultations/{self.consultation}/join-token"))["token"]
        return await joined(self.session, self.served.url, self.consultation, role, token)

    async def _hear_asks(self) -> None:
        assert self.nurse_ws is not None
        async for message in self.nurse_ws:
            frame = message.json()
            if frame.get("type") == "snapshot_request":
                self._tasks.append(asyncio.create_task(self._upload(frame["id"])))

    async def _upload(self, request: str) -> None:
        photo = self.photos[next(self._turn) % len(self.photos)]
        response = await self.nurse.request(
            "POST", f"/api/consultations/{self.consultation}/snapshots?request={request}",
            data=photo, headers={"Content-Type": "image/jpeg"},
        )
        if response.status != 201:
            found = self.waiting.pop(request, None)
            if found is not None:
                found.set_exception(RuntimeError(f"upload answered {response.status}: {await response.text()}"))

    async def _hear_stored(self) -> None:
        assert self.asker is not None
        async for message in self.asker:
            frame = message.json()
            if frame.get("type") == "snapshot_stored":
                found = self.waiting.pop(frame.get("request"), None)
                if found is not None and not found.done():
                    found.set_result(time.perf_counter())

    async def snapshot(self) -> float:
        """Ask, and wait until the asker hears it stored: the seconds it took."""
        assert self.asker is not None
        request = secrets.token_hex(8)
        heard = asyncio.get_running_loop().create_future()
        self.waiting[request] = heard
        asked = time.perf_counter()
        await self.asker.send_json({"type": "snapshot_request", "id": request})
        return float(await asyncio.wait_for(heard, 120)) - asked

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for ws in (self.asker, self.nurse_ws):
            if ws is not None:
                await ws.close()
        if self.pinger is not None:
            await self.pinger.close()
        await self.nurse.close()
        await self.session.close()


async def joined(
    session: aiohttp.ClientSession, url: str, consultation: str, role: str, token: str, autoping: bool = True
) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(f"{url}/ws", autoping=autoping)
    await ws.send_json({"type": "join", "v": 1, "consultation": consultation, "role": role, "token": token})
    while (await ws.receive_json(timeout=10))["type"] != "joined":
        pass
    return ws


class Pinger:
    """The pinging specialist's socket in a child process (``--pinger``): told ``go`` and
    ``stop`` on its stdin, it answers with the round trips between them, in seconds, as JSON."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @classmethod
    async def start(cls, url: str, consultation: str | None = None, token: str | None = None) -> Pinger:
        """Joined to ``consultation`` with ``token``; without them, on the bare relay."""
        process = await asyncio.create_subprocess_exec(
            # One argument of the form --pinger=...: a token may start with "-", which argparse
            # would take for an option of its own (the pinger then never joined).
            sys.executable, "-m", "bench.ingest", f"--pinger={json.dumps([url, consultation, token])}",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        pinger = cls(process)
        if await pinger._line() != "ready":
            raise RuntimeError("the pinger did not join")
        return pinger

    async def _line(self) -> str:
        assert self._process.stdout is not None
        return (await self._process.stdout.readline()).decode().strip()

    async def _say(self, word: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(f"{word}\n".encode())
        await self._process.stdin.drain()

    async def go(self) -> None:
        await self._say("go")

    async def stop(self) -> list[float]:
        await self._say("stop")
        return [float(rtt) for rtt in json.loads(await self._line())]

    async def close(self) -> None:
        await self._say("end")
        await self._process.wait()


async def ping_forever(url: str, consultation: str | None, token: str | None) -> None:
    """The ``--pinger`` child: join, then ping between each ``go`` and ``stop`` on stdin."""
    async with aiohttp.ClientSession() as session:
        # Pongs are this client's to see (aiohttp's autoping would swallow them).
        if consultation is None or token is None:
            ws = await session.ws_connect(f"{url}/ws?id=pinger", autoping=False)
        else:
            ws = await joined(session, url, consultation, "specialist", token, autoping=False)
        pongs: dict[bytes, asyncio.Future[float]] = {}

        async def hear() -> None:
            async for message in ws:
                if message.type is aiohttp.WSMsgType.PING:
                    await ws.pong(message.data)
                elif message.type is aiohttp.WSMsgType.PONG:
                    found = pongs.pop(message.data, None)
                    if found is not None:
                        found.set_result(time.perf_counter())

        async def ping(stop: asyncio.Event) -> list[float]:
            seen: list[float] = []
            while not stop.is_set():
                payload = secrets.token_bytes(8)
                pong = asyncio.get_running_loop().create_future()
                pongs[payload] = pong
                sent = time.perf_counter()
                await ws.ping(payload)
                seen.append(await asyncio.wait_for(pong, 30) - sent)
                await asyncio.sleep(PING_EVERY)
            return seen

        hearing = asyncio.create_task(hear())
        print("ready", flush=True)
        while (await asyncio.to_thread(sys.stdin.readline)).strip() == "go":
            stop = asyncio.Event()
            pinging = asyncio.create_task(ping(stop))
            await asyncio.to_thread(sys.stdin.readline)
            stop.set()
            print(json.dumps(await pinging), flush=True)
        hearing.cancel()
        await ws.close()


@asynccontextmanager
async def served_ward(name: str, work: Path, database_url: str | None, photos: Sequence[bytes]) -> AsyncIterator[Ward]:
    settings = Settings(port=free_port(), data_dir=work / name, database_url=database_url, demo=False)
    server = await RunningServer.start(settings)
    await server.add_user("sykepleier", PASSWORD, {"east": StaffRole.NURSE})
    nurse, specialists = ApiClient(server.url), [ApiClient(server.url), ApiClient(server.url)]
    await nurse.login("sykepleier", PASSWORD)
    for n, specialist in enumerate(specialists):
        await server.add_user(f"spesialist{n}", PASSWORD, {"east": StaffRole.SPECIALIST})
        await specialist.login(f"spesialist{n}", PASSWORD)
    patient = await nurse.json("POST", "/api/patients", expect=201,
                               json={"region": "east", "nationalId": "01018012371", "name": "Bench Pasient"})
    consultation = (await nurse.json("POST", "/api/consultations", expect=201, json={"patient": patient["id"]}))["id"]
    await nurse.json("POST", f"/api/consultations/{consultation}/consents", expect=201,
                     json={"video": True, "snapshots": True})
    await server.stop()
    served = ServerProcess(data_dir=settings.data_dir, database_url=settings.db_url, instance="bench",
                           port=settings.port, log_path=work / f"{name}.log")
    await served.start()
    ward = Ward(name, served, consultation, nurse, aiohttp.ClientSession(), photos=photos)
    try:
        await ward.join(specialists)
        for specialist in specialists:
            await specialist.close()
        yield ward
    finally:
        await ward.close()
        await served.terminate()


@dataclass
class Bare:
    """``bench.bare_relay`` in its own process, taking the photos in at a given pace."""

    served: RunningProcess
    session: aiohttp.ClientSession
    pinger: Pinger
    photos: Sequence[bytes]
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def pid(self) -> int:
        return self.served.pid

    async def upload(self) -> float:
        """One photo posted and answered: the seconds it took."""
        photo = self.photos[next(self._turn) % len(self.photos)]
        started = time.perf_counter()
        async with self.session.post(f"http://127.0.0.1:{self.served.port}/upload", data=photo,
                                     headers={"Content-Type": "image/jpeg"}) as response:
            if response.status != 201 or (await response.json())["bytes"] != len(photo):
                raise RuntimeError(f"the bare receiver answered {response.status}")
        return time.perf_counter() - started


@asynccontextmanager
async def bare_receiver(work: Path, photos: Sequence[bytes]) -> AsyncIterator[Bare]:
    served = await asyncio.to_thread(start_bare, work)
    try:
        pinger = await Pinger.start(f"http://127.0.0.1:{served.port}")
        try:
            async with aiohttp.ClientSession() as session:
                yield Bare(served, session, pinger, photos)
        finally:
            await pinger.close()
    finally:
        await asyncio.to_thread(served.stop)


# --- runs ------------------------------------------------------------------------------------


@dataclass
class Run:
    rate: float
    cpu: float
    """Server CPU seconds per snapshot."""
    p50: float
    p99: float
    ping_idle_p99: float
    ping_busy_p99: float


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def timed_run(pinger: Pinger, pid: int, one: Callable[[], Awaitable[float]], count: int, concurrency: int) -> Run:
    """``count`` calls of ``one`` (each returning its own seconds), ``concurrency`` at a time,
    with the ping's p99 for :data:`IDLE_PING_SECONDS` before and during them, and the CPU of
    the server ``pid`` meanwhile."""
    await pinger.go()
    await asyncio.sleep(IDLE_PING_SECONDS)
    idle = await pinger.stop()
    remaining = iter(range(count))
    latencies: list[float] = []

    async def worker() -> None:
        for _ in remaining:
            latencies.append(await one())

    await pinger.go()
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu_before
    busy = await pinger.stop()
    return Run(count / elapsed, cpu / count, statistics.median(latencies), p99(latencies), p99(idle), p99(busy))


async def ingest_run(ward: Ward, count: int, concurrency: int) -> Run:
    assert ward.pinger is not None
    return await timed_run(ward.pinger, ward.pid, ward.snapshot, count, concurrency)


async def bare_run(bare: Bare, count: int, concurrency: int, rate: float) -> Run:
    """The photos posted to the bare receiver, started no faster than ``rate`` a second
    (``concurrency`` in flight at most): the bodies arrive as fast as at woundcare's, and its
    ping is timed under the same stream of bytes."""
    turns = itertools.count()
    first: float | None = None

    async def paced() -> float:
        nonlocal first
        now = time.perf_counter()
        first = now if first is None else first
        await asyncio.sleep(max(0.0, first + next(turns) / rate - now))
        return await bare.upload()

    return await timed_run(bare.pinger, bare.pid, paced, count, concurrency)


# --- the table -------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def report(
    runs: dict[tuple[str, int], list[Run]], floors: dict[tuple[str, int], list[tuple[float, float]]], load: str
) -> bool:
    ok = True
    print(f"\nload before: {load}; after: {Path('/proc/loadavg').read_text().strip()}")
    print(f"{'side':<26}{'snapshots/s':>12}{'CPU/snap':>10}{'p50':>10}{'p99':>10}"
          f"{'ping idle':>11}{'ping busy':>11}{'x floor':>9}")
    for concurrency in CONCURRENCIES:
        work = statistics.median(rate for rate, _ in floors["work", concurrency])
        work_cpu = statistics.median(cpu for _, cpu in floors["work", concurrency])
        storage = statistics.median(rate for rate, _ in floors["storage", concurrency])
        storage_cpu = statistics.median(cpu for _, cpu in floors["storage", concurrency])
        print(f"{f'work floor c={concurrency}':<26}{work:>12.2f}{work_cpu:>9.3f}s")
        print(f"{f'storage floor c={concurrency}':<26}{storage:>12.2f}{storage_cpu:>9.3f}s")
        checked: list[str] = []  # printed under the rows, the bare receiver's among them
        # The bare receiver last: it runs at the woundcare sides' pace.
        for (name, c), found in sorted(runs.items(), key=lambda item: item[0][0] == BARE):
            if c != concurrency:
                continue
            rate = statistics.median(r.rate for r in found)
            cpu = statistics.median(r.cpu for r in found)
            idle = statistics.median(r.ping_idle_p99 for r in found)
            busy = statistics.median(r.ping_busy_p99 for r in found)
            # Each round's run against that round's floor: the machine's load moves both alike
            # within a round far more than across rounds.
            share = statistics.median(r.rate / f[0] for r, f in zip(found, floors["work", concurrency], strict=True))
            label = f"{name} c={c}" if name == BARE else f"ingest {name} c={c}"
            print(f"{label:<26}{rate:>12.2f}{cpu:>9.3f}s"
                  f"{_ms(statistics.median(r.p50 for r in found)):>10}{_ms(statistics.median(r.p99 for r in found)):>10}"
                  f"{_ms(idle):>11}{_ms(busy):>11}{'' if name == BARE else f'{share:9.2f}'}")
            if name != BARE and c == max(CONCURRENCIES):
                checks = {
                    f"{name}: >= {TARGET_RATE:g} snapshots/s": rate >= TARGET_RATE,
                    f"{name}: <= {TARGET_CPU} s CPU per snapshot": cpu <= TARGET_CPU,
                    f"{name}: >= {TARGET_FLOOR_SHARE} of the work floor": share >= TARGET_FLOOR_SHARE,
                    f"{name}: /ws ping p99 during ingest <= {TARGET_PING_GROWTH:g}x idle": busy <= TARGET_PING_GROWTH * idle,
                }
                for check, held in checks.items():
                    checked.append(f"  {'met ' if held else 'MISSED'} {check}")
                    ok = ok and held
                # Not a target: the same stream of bytes into an aiohttp server that does
                # nothing else, the same round.
                against = statistics.median(r.ping_busy_p99 / b.ping_busy_p99 for r, b in zip(found, runs[BARE, c], strict=True))
                checked.append(f"  (for reading) {name}: /ws ping p99 during ingest {against:.2f}x the bare receiver's at the same pace")
        for line in checked:
            print(line)
    print("(medians of the rounds; x floor: the median of each round's run over that round's work floor;")
    print(f" {BARE}: the same photos into bench.bare_relay, which drops them, at the pace woundcare reached that round)")
    return ok


async def measure(rounds: int, count: int, postgres: str | None) -> bool:
    """Run and print; True if every target was met (printed either way)."""
    load = Path("/proc/loadavg").read_text().strip()
    print("making the photos ...", file=sys.stderr, flush=True)
    photos = await asyncio.gather(*(asyncio.to_thread(camera_jpeg, seed) for seed in range(PHOTOS)))
    print(f"photos: {', '.join(f'{len(p) / 1e6:.1f} MB' for p in photos)}", file=sys.stderr, flush=True)
    runs: dict[tuple[str, int], list[Run]] = {}
    floors: dict[tuple[str, int], list[tuple[float, float]]] = {}
    async with AsyncExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="woundcare-ingest-")))
        (work / "floor").mkdir()
        wards = [await stack.enter_async_context(served_ward("sqlite", work, None, photos))]
        if postgres is not None:
            url = await stack.enter_async_context(postgres_database(postgres))
            wards.append(await stack.enter_async_context(served_ward("postgresql", work, url, photos)))
        bare = await stack.enter_async_context(bare_receiver(work, photos))
        for ward in wards:
            for _ in range(WARMUP):
                await ward.snapshot()
        for _ in range(WARMUP):
            await bare.upload()
        for round_ in range(rounds):
            # Each round starts at another side, so that none always follows the same one.
            sides: list[tuple[str, int]] = [(kind, c) for c in CONCURRENCIES for kind in ("work", "storage")]
            sides += [(ward.name, c) for c in CONCURRENCIES for ward in wards]
            shift = round_ % len(sides)
            for name, concurrency in (*sides[shift:], *sides[:shift]):
                if name in ("work", "storage"):
                    n = count // 2 if name == "work" else count
                    seconds, cpu = await asyncio.to_thread(floor_run, work / "floor", photos, n, concurrency, name == "work")
                    floors.setdefault((name, concurrency), []).append((n / seconds, cpu / n))
                    figure = f"{n / seconds:.2f}/s, {cpu / n:.3f} s CPU"
                else:
                    [ward] = [w for w in wards if w.name == name]
                    run = await ingest_run(ward, count // 2 if concurrency == 1 else count, concurrency)
                    runs.setdefault((name, concurrency), []).append(run)
                    figure = f"{run.rate:.2f}/s, {run.cpu:.3f} s CPU, ping p99 {_ms(run.ping_idle_p99)} -> {_ms(run.ping_busy_p99)}"
                print(f"  round {round_ + 1}: {name} c={concurrency}: {figure}", file=sys.stderr, flush=True)
            for concurrency in CONCURRENCIES:
                # After the round's woundcare runs, at the mean of their rates.
                rate = statistics.mean(runs[ward.name, concurrency][-1].rate for ward in wards)
                run = await bare_run(bare, count // 2 if concurrency == 1 else count, concurrency, rate)
                runs.setdefault((BARE, concurrency), []).append(run)
                print(f"  round {round_ + 1}: {BARE} c={concurrency}: {run.rate:.2f}/s, {run.cpu:.3f} s CPU, "
                      f"ping p99 {_ms(run.ping_idle_p99)} -> {_ms(run.ping_busy_p99)}", file=sys.stderr, flush=True)
    return report(runs, floors, load)


async def reachable(dsn: str) -> bool:
    try:
        await (await asyncpg.connect(dsn, timeout=3)).close()
    except (OSError, asyncpg.PostgresError):
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--snapshots", type=int, default=40, help="per run at concurrency 4 (half at 1)")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--pinger", type=json.loads, metavar="[URL, CONSULTATION, TOKEN]", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # uvloop, as the server runs: the phones' side of an upload is not the server's work, but
    # here it shares the machine with it, and asyncio's transport copies what the socket does
    # not take at once (most of a 5 MB body) into a buffer of its own, uvloop's does not.
    try:
        import uvloop
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        if args.pinger is not None:
            runner.run(ping_forever(*args.pinger))
            return 0
        postgres = None if args.no_postgres else args.postgres
        if postgres is not None and not runner.run(reachable(postgres)):
            print(f"PostgreSQL not reachable at {postgres}; SQLite only", file=sys.stderr)
            postgres = None
        runner.run(measure(args.rounds, args.snapshots, postgres))
    return 0


if __name__ == "__main__":
    sys.exit(main())
