"""Where uploaded photos are checked, and how many pixels at once.

A photo's file size says little about its decoding cost: a 113 KB all-zero PNG of
6300x6300 decodes to 119 MB of pixels, and re-encoding and the thumbnail copy them again.
Six such uploads at once once took a server from 156 MB to over 1 GB, and, decoded in the
default thread pool, kept password hashing (logins) waiting for seconds.

So photos are checked (``clean_image``: decode check, metadata strip, thumbnail) in worker
processes of their own (``ImageWork``), never in the server's process, and under a
``PixelBudget``: the pixels of all the photos being decoded at once stay under a total.
A photo that does not fit waits for others to finish; one that cannot start within
``wait_seconds`` of its upload's arrival (queueing for a worker included) is refused with
``ImageBusy`` (the API answers ``503 busy``). A photo larger than the whole budget is decoded
alone.

Processes, not threads: much of a check is Python (Pillow's reading loop, the marker walk,
joins of megabytes) that holds the GIL, and the event loop's thread waited for it, up to the
interpreter's switch interval (5 ms) at a time and longer while a niced image thread holding
the GIL waited for a CPU: ``/ws`` ping p99 went from 0.6 ms idle to 7-12 ms during ingest
(``bench.ingest``). A worker has a GIL of its own.

The workers run at a lower CPU priority (``nice`` +10) than the server: on a server with few
cores, decoding photos would otherwise take turns on the CPU with the loop that relays every
signaling frame and answers every request. Uploads still use every idle cycle; they only yield
when the loop has work. They are spawned (a clean interpreter, not a copy of a process with an
event loop and threads) on first use and die with the server (``PR_SET_PDEATHSIG``). A worker
that dies mid-check (killed, out of memory) fails the uploads it held with
``ImageWorkerLost`` (``503 image_worker_failed``); the next upload starts fresh workers.

An upload reaches a worker as a :class:`PhotoFile`, a memory file (``memfd``) the request's
body was written into as it arrived: the worker opens it by its ``/proc`` path (the server is
its parent), reads it, and writes the cleaned picture back into it, so megabytes cross between
the processes through the kernel's page cache, never through a pipe or a pickle. The server
then seals and stores the picture from the same file (``ImageWork.threads``: sealing and
``fsync`` release the GIL).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import mmap
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import WoundcareError
from .images import MediaType, clean_image

T = TypeVar("T")

_SPAWN = multiprocessing.get_context("spawn")


class ImageBusy(WoundcareError):
    """The pixel budget stayed spent for longer than an upload may wait."""

    code = "busy"
    status = 503
    message = "too many photos are being processed; please send it again shortly"


class ImageWorkerLost(WoundcareError):
    """The worker process checking the photo ended before it answered; nothing was stored."""

    code = "image_worker_failed"
    status = 503
    message = "the photo could not be processed; please send it again"


class PixelBudget:
    """Pixels being decoded at once, across worker processes; taken before a decode, returned
    after. Shared with the workers it is given to when they are spawned.

    A waiter polls (every ``_POLL`` s) rather than sleeping on a ``multiprocessing.Condition``:
    that one's ``notify`` waits for every sleeper to wake, and a worker killed while it slept
    never does, so the next upload to give pixels back would hang. Waits are rare (only while
    the budget is spent) and bounded by ``wait_seconds``."""

    def __init__(self, total: int, wait_seconds: float) -> None:
        self.total = total
        self._wait_seconds = wait_seconds
        self._in_use = _SPAWN.RawValue("q", 0)
        self._lock = _SPAWN.Lock()

    @property
    def in_use(self) -> int:
        return int(self._in_use.value)

    @contextlib.contextmanager
    def hold(self, pixels: int, *, since: float | None = None) -> Iterator[None]:
        """Block this process (or thread) until ``pixels`` fit, then hold them for the block.

        The wait is counted from ``since`` (``time.monotonic()``, one clock for all processes;
        default now): an upload that queued for a worker has spent part of its wait already."""
        wanted = min(max(pixels, 1), self.total)
        deadline = (time.monotonic() if since is None else since) + self._wait_seconds
        while not self._take(wanted):
            if time.monotonic() >= deadline:
                raise ImageBusy
            time.sleep(_POLL)
        try:
            yield
        finally:
            with self._lock:
                self._in_use.value -= wanted

    def _take(self, wanted: int) -> bool:
        with self._lock:
            if self._in_use.value + wanted > self.total:
                return False
            self._in_use.value += wanted
            return True


_POLL = 0.005


NICENESS = 10
"""How much lower the image workers' CPU priority is than the server's (Linux ``nice``)."""


class PhotoFile:
    """An uploaded photo in a memory file: written as it arrives, checked by a worker, which
    writes the cleaned picture back, and read (mapped, not copied) by the sealing."""

    def __init__(self) -> None:
        self._fd = os.memfd_create("woundcare-photo", os.MFD_CLOEXEC)
        self.inode = os.fstat(self._fd).st_ino
        """Which file this is: a worker that opens :attr:`path` checks it, since once this one
        is closed (its upload abandoned) the number may name another upload's file."""
        self.size = 0

    @classmethod
    def of(cls, data: bytes | bytearray | memoryview) -> PhotoFile:
        photo = cls()
        try:
            photo.write(data)
        except BaseException:
            photo.close()
            raise
        return photo

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self.size += len(data)

    @property
    def path(self) -> str:
        """Where another process of this user opens the file (``os.getpid()``'s fd table; the
        server's ``/proc/<pid>/fd`` must be open to its children: same user, dumpable)."""
        return f"/proc/{os.getpid()}/fd/{self._fd}"

    @contextlib.contextmanager
    def mapped(self, size: int) -> Iterator[memoryview]:
        """The file's first ``size`` bytes, read-only, without a copy."""
        with mmap.mmap(self._fd, size, prot=mmap.PROT_READ) as memory, memoryview(memory) as view:
            yield view

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> PhotoFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class Checked:
    """A :class:`~woundcare.records.images.CleanImage` whose picture is back in the
    :class:`PhotoFile`, as its first ``size`` bytes."""

    media_type: MediaType
    width: int
    height: int
    size: int
    thumbnail: bytes
    thumb_width: int
    thumb_height: int


class PhotoGone(Exception):
    """The photo's file was closed before its worker opened it: its upload was abandoned
    (a cancelled request), and no one waits for this."""


def _check(path: str, inode: int, since: float, limits: dict[str, int]) -> Checked:
    """In a worker: the photo at ``path`` checked, its cleaned picture written back over it."""
    with open(path, "r+b") as file:
        if os.fstat(file.fileno()).st_ino != inode:
            raise PhotoGone
        data = file.read()
        clean = clean_image(data, hold_pixels=functools.partial(_budget().hold, since=since), **limits)
        del data
        # Over the upload's pages, then cut: a truncate first would free them and the write
        # fault in fresh ones (3 ms against 0.6 ms for 5 MB).
        file.seek(0)
        file.write(clean.data)
        file.truncate()
    return Checked(
        clean.media_type, clean.width, clean.height, len(clean.data),
        clean.thumbnail, clean.thumb_width, clean.thumb_height,
    )


_worker_budget: PixelBudget | None = None


def _budget() -> PixelBudget:
    if _worker_budget is None:
        raise RuntimeError("not in an image worker")
    return _worker_budget


def _start_worker(budget: PixelBudget) -> None:
    """In a new worker: die with the server, yield the CPU to it, keep its budget."""
    global _worker_budget
    if sys.platform == "linux":
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the server was gone before the line above took effect
        os._exit(0)
    os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + NICENESS)
    _worker_budget = budget


class ImageWork:
    """The image workers, their pixel budget and the threads that seal and store; one per server."""

    def __init__(self, workers: int = 2, pixel_budget: int = 50_000_000, wait_seconds: float = 30.0) -> None:
        self._workers = workers
        self._wait_seconds = wait_seconds
        self.budget = PixelBudget(pixel_budget, wait_seconds)
        self._pool: ProcessPoolExecutor | None = None
        self.threads = ThreadPoolExecutor(workers, thread_name_prefix="image-store")
        """Where a checked photo is sealed and written: AES-GCM and the file's write and fsyncs
        release the GIL, so these threads keep it for microseconds at a time."""

    async def check(self, photo: PhotoFile, since: float, **limits: int) -> Checked:
        """``clean_image`` of ``photo`` in a worker, under the budget counted from ``since``."""
        return await self.run(_check, photo.path, photo.inode, since, limits)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a worker process (it and its arguments are pickled)."""
        pool = self._pool
        if pool is None:
            pool = self._pool = ProcessPoolExecutor(
                self._workers, mp_context=_SPAWN, initializer=_start_worker, initargs=(self.budget,)
            )
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, function, *args)
        except BrokenProcessPool:
            if self._pool is pool:
                # Every worker of a broken pool is gone, with whatever pixels they held.
                self._pool = None
                self.budget = PixelBudget(self.budget.total, self._wait_seconds)
                pool.shutdown(wait=False)
            raise ImageWorkerLost from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.threads.shutdown(wait=True)
