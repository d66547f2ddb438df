"""Storing wound snapshots: woundcare's ``Snapshots.store`` beside AES-GCM + fsync'd files.

Every run stores 50 snapshots of about 4 MB, a fixed number of them in flight at once
(4 by default), and is timed from the first start to the last finish. Sides, measured
interleaved in one process:

``floor``
    The same image bytes encrypted with AES-256-GCM (a fresh nonce each), written to one new
    file per snapshot in a temporary directory on the same filesystem, fsync'd, its pages
    dropped from the page cache (as ``BlobStore.put`` drops a blob's: filling fresh pages cost
    more CPU than the write on the benches' machine) and closed. No database, no thumbnail, no
    directory fsync: the cheapest durable encrypted write.
``storage only`` (b)
    ``Snapshots.store`` through a started app (``services.snapshots``), with ``clean_image``
    replaced by its precomputed result. What is left is what the issue names: seal image and
    thumbnail with the region key, the write intent, the atomic blob write (file and
    directory fsyncs) and the commit of the snapshot row (the thumbnail sealed into it) with
    its session-log event.
``full store`` (a)
    ``Snapshots.store`` as it is, so also the upload's check (a reduced-size decode), the
    metadata strip and the thumbnail, which the floor does not do (``bench.ingest`` has a
    floor that does).

Each database side runs on SQLite (the default, in a temporary data folder) and, when it is
reachable, on PostgreSQL in a fresh database dropped at the end. The target applies to (b).

    python -m bench.storage [--rounds N] [--concurrency N] [--postgres DSN | --no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from PIL import Image

import woundcare.records.snapshots as snapshots_module
from bench.common import free_port, postgres_database
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.config import Settings
from woundcare.db.models import Consultation
from woundcare.records.images import CleanImage, clean_image
from woundcare.records.snapshots import Snapshots

TARGET_RATIO = 0.7
"""Storage only (b) must reach at least this share of the floor's throughput (median runs)."""
SNAPSHOTS_PER_RUN = 50
DEFAULT_ROUNDS = 5
MIN_ROUNDS = 3
DEFAULT_CONCURRENCY = 4
"""Stores in flight at once: several nurses upload to one server; the floor gets as many threads."""
WARMUP_SNAPSHOTS = 4
"""Unmeasured stores per side first: region key creation, first-use imports, connection pool."""
WIDTH, HEIGHT = 2400, 1800
NOISE_SIGMA = 11.5
"""Sensor-like noise, sized so the picture is about 4 MB (noise compresses badly)."""
JPEG_QUALITY = 92
DEFAULT_POSTGRES = os.environ.get("WOUNDCARE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
MB = 1_000_000


def photo_like_jpeg(width: int = WIDTH, height: int = HEIGHT, seed: int = 7) -> bytes:
    """A JPEG that compresses like a phone photo: smooth colour fields, texture, sensor noise."""
    rng = np.random.default_rng(seed)

    def upscaled(rows: int, cols: int, low: float, high: float) -> np.ndarray:
        small = rng.uniform(low, high, size=(rows, cols, 3)).astype(np.uint8)
        big = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
        return np.asarray(big, dtype=np.float32)

    colour = upscaled(height // 150 + 2, width // 150 + 2, 40, 220)
    texture = upscaled(height // 8, width // 8, 88, 168) - 128
    noise = rng.normal(0, NOISE_SIGMA, size=(height, width, 3)).astype(np.float32)
    pixels = np.clip(colour + texture + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=JPEG_QUALITY, subsampling=0)
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class Workload:
    upload: bytes
    """What a nurse's phone sends."""
    clean: CleanImage
    """``clean_image(upload)``: what is sealed and stored; the floor encrypts ``clean.data``."""

    @property
    def stored_bytes(self) -> int:
        """The image bytes per snapshot that every side's MB/s counts (thumbnail not included)."""
        return len(self.clean.data)


# --- floor ---------------------------------------------------------------------------------


def _floor_one(key: bytes, data: bytes, path: Path) -> None:
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, data, path.name.encode())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with open(fd, "wb") as file:
        file.write(nonce)
        file.write(sealed)
        file.flush()
        os.fsync(file.fileno())
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def floor_run(directory: Path, data: bytes, count: int, concurrency: int) -> float:
    """Seconds to encrypt and durably write ``count`` files, ``concurrency`` threads at a time."""
    key = AESGCM.generate_key(bit_length=256)
    paths = [directory / secrets.token_hex(12) for _ in range(count)]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        started = time.perf_counter()
        for _ in pool.map(lambda path: _floor_one(key, data, path), paths):
            pass
        elapsed = time.perf_counter() - started
    return elapsed


# --- woundcare -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where snapshots go: a consultation on a started app."""

    server: RunningServer
    consultation_id: str
    region_id: int
    patient_id: int

    @property
    def snapshots(self) -> Snapshots:
        return self.server.app[SERVICES].snapshots

    @property
    def blob_dir(self) -> Path:
        return self.server.settings.blob_dir

    @classmethod
    async def start(cls, data_dir: Path, database_url: str | None) -> Target:
        settings = Settings(port=free_port(), data_dir=data_dir, database_url=database_url, demo=False)
        server = await RunningServer.start(settings)
        consultation_id = await server.new_consultation()
        async with server.app[SERVICES].database.sessions() as session:
            consultation = await session.get_one(Consultation, consultation_id)
        return cls(server, consultation_id, consultation.region_id, consultation.patient_id)


@contextmanager
def precleaned(clean: CleanImage) -> Iterator[None]:
    """``Snapshots.store`` with ``clean_image`` already done: it gets ``clean`` back at once."""

    def cleaned(data: bytes, **limits: int) -> CleanImage:
        return clean

    original = snapshots_module.clean_image
    snapshots_module.clean_image = cleaned  # type: ignore[assignment]
    try:
        yield
    finally:
        snapshots_module.clean_image = original


async def store_run(target: Target, upload: bytes, count: int, concurrency: int) -> float:
    """Seconds to store ``count`` snapshots through ``Snapshots.store``, ``concurrency`` at a time."""
    remaining = iter(range(count))
    service = target.snapshots

    async def worker() -> None:
        for _ in remaining:
            await service.store(target.consultation_id, target.region_id, target.patient_id, upload, "bench")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


# --- between runs --------------------------------------------------------------------------


def remove_files(root: Path) -> None:
    """Delete what a run wrote (files only: the blob store keeps its shard folders, as a store
    in use would), then flush it all, so no run's journal commit pays for another's deletes."""
    for directory, _, files in os.walk(root):
        for name in files:
            os.unlink(os.path.join(directory, name))
    os.sync()


# --- measuring -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Side:
    label: str
    database: str | None
    """``None`` for the floor."""
    full: bool
    """Whether ``clean_image`` runs (a) or is precomputed (b)."""
    run: Callable[[int], Awaitable[float]]
    """Store this many snapshots; returns the seconds it took."""
    clean_up: Callable[[], None]


@dataclass(frozen=True, slots=True)
class Summary:
    side: Side
    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass(frozen=True, slots=True)
class Result:
    workload: Workload
    summaries: tuple[Summary, ...]
    concurrency: int
    loop: str
    notes: tuple[str, ...]

    @property
    def floor(self) -> Summary:
        return next(s for s in self.summaries if s.side.database is None)

    def ratio(self, summary: Summary) -> float:
        """Throughput over the floor's: the floor's median time over this side's."""
        return self.floor.median / summary.median


def _store_sides(name: str, target: Target, workload: Workload, concurrency: int) -> list[Side]:
    async def storage_only(count: int) -> float:
        with precleaned(workload.clean):
            return await store_run(target, workload.upload, count, concurrency)

    async def full(count: int) -> float:
        return await store_run(target, workload.upload, count, concurrency)

    def clean_up() -> None:
        remove_files(target.blob_dir)

    return [
        Side(f"{name}: storage only (b)", name, False, storage_only, clean_up),
        Side(f"{name}: full store (a)", name, True, full, clean_up),
    ]


async def measure(
    workload: Workload, rounds: int, concurrency: int, postgres: str | None, loop_name: str
) -> Result:
    notes: list[str] = []
    async with AsyncExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="woundcare-bench-")))
        floor_dir = work_dir / "floor"
        floor_dir.mkdir()

        async def floor(count: int) -> float:
            return await asyncio.to_thread(floor_run, floor_dir, workload.clean.data, count, concurrency)

        sides = [Side("floor: AES-GCM + write + fsync", None, False, floor, lambda: remove_files(floor_dir))]

        sqlite = await Target.start(work_dir / "sqlite", None)
        stack.push_async_callback(sqlite.server.stop)
        sides += _store_sides("SQLite", sqlite, workload, concurrency)

        if postgres is None:
            notes.append("PostgreSQL: skipped (--no-postgres)")
        else:
            try:
                url = await stack.enter_async_context(postgres_database(postgres))
            # Unreachable, refused, no rights: a note, never a failure.
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                notes.append(f"PostgreSQL: skipped, not reachable at {postgres} ({type(exc).__name__}: {exc})")
            else:
                pg = await Target.start(work_dir / "postgres", url)
                stack.push_async_callback(pg.server.stop)
                sides += _store_sides("PostgreSQL", pg, workload, concurrency)

        for side in sides:  # warm-up, unmeasured
            await side.run(WARMUP_SNAPSHOTS)
            side.clean_up()

        times: dict[str, list[float]] = {side.label: [] for side in sides}
        for index in range(rounds):
            # Interleaved, and every other round in reverse, so noise and position fall on all.
            for side in sides if index % 2 == 0 else reversed(sides):
                times[side.label].append(await side.run(SNAPSHOTS_PER_RUN))
                side.clean_up()

    return Result(
        workload,
        tuple(Summary(side, tuple(times[side.label])) for side in sides),
        concurrency,
        loop_name,
        tuple(notes),
    )


# --- output --------------------------------------------------------------------------------


def _mb_per_s(workload: Workload, seconds: float) -> float:
    return SNAPSHOTS_PER_RUN * workload.stored_bytes / MB / seconds


def render(result: Result) -> str:
    workload = result.workload
    clean = workload.clean
    rounds = len(result.floor.seconds)
    rows = [("", "MB/s", "(min-max)", "snapshots/s", "vs floor")]
    for summary in result.summaries:
        rates = sorted(_mb_per_s(workload, s) for s in summary.seconds)
        rows.append(
            (
                summary.side.label,
                f"{_mb_per_s(workload, summary.median):.1f}",
                f"({rates[0]:.1f}-{rates[-1]:.1f})",
                f"{SNAPSHOTS_PER_RUN / summary.median:.1f}",
                f"{result.ratio(summary):.2f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        (
            f"storing {SNAPSHOTS_PER_RUN} snapshots per run, {result.concurrency} in flight, {rounds} "
            f"interleaved rounds per side (+{WARMUP_SNAPSHOTS} warm-up stores), event loop: {result.loop}"
        ),
        (
            f"upload {clean.width}x{clean.height} JPEG {len(workload.upload) / MB:.2f} MB; stored image "
            f"{workload.stored_bytes / MB:.2f} MB + thumbnail {len(clean.thumbnail) / 1000:.1f} kB "
            "(MB/s counts the image bytes, 1 MB = 10^6 bytes)"
        ),
        "",
    ]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    lines += ["", *result.notes] if result.notes else []
    lines += [
        "",
        (
            f"target: storage only (b) >= {TARGET_RATIO:.1f} of the floor (the issue's \"encrypt + write "
            "+ fsync + database row\"; medians)"
        ),
    ]
    for summary in result.summaries:
        if summary.side.database is not None and not summary.side.full:
            ratio = result.ratio(summary)
            verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
            lines.append(f"  {summary.side.database:<10}  {ratio:.2f}  {verdict}")
    full = [
        f"{s.side.database} {result.ratio(s):.2f}"
        for s in result.summaries
        if s.side.database is not None and s.side.full
    ]
    lines.append(f"full store incl. clean_image (a), no target (the floor decodes nothing): {', '.join(full)}")
    return "\n".join(lines)


def _at_least(minimum: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"at least {minimum} {what} (got {value})")
        return value

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.storage",
        description=f"Throughput of storing {SNAPSHOTS_PER_RUN} snapshots of about 4 MB through "
        "Snapshots.store, beside AES-GCM encryption of the same bytes and an fsync'd file write "
        "(the floor), and their ratio.",
    )
    parser.add_argument(
        "--rounds", type=_at_least(MIN_ROUNDS, "rounds for a median"), default=DEFAULT_ROUNDS,
        help=f"measured runs of {SNAPSHOTS_PER_RUN} per side, interleaved (default {DEFAULT_ROUNDS}, "
        f"at least {MIN_ROUNDS})",
    )
    parser.add_argument(
        "--concurrency", type=_at_least(1, "store in flight"), default=DEFAULT_CONCURRENCY,
        help=f"stores in flight at once, and floor threads (default {DEFAULT_CONCURRENCY}; 1 = sequential)",
    )
    databases = parser.add_mutually_exclusive_group()
    databases.add_argument(
        "--postgres", default=DEFAULT_POSTGRES, metavar="DSN",
        help="admin DSN for a temporary database (default $WOUNDCARE_TEST_POSTGRES or %(default)s)",
    )
    databases.add_argument("--no-postgres", action="store_const", const=None, dest="postgres",
                           help="SQLite only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    upload = photo_like_jpeg()
    workload = Workload(upload, clean_image(upload))
    try:
        import uvloop
    except ImportError:
        loop_factory, loop_name = None, "asyncio"
    else:
        loop_factory, loop_name = uvloop.new_event_loop, "uvloop"
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(measure(workload, args.rounds, args.concurrency, args.postgres, loop_name))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
