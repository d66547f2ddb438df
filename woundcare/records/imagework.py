"""Where uploaded photos are decoded, and how many pixels at once.

A photo's file size says little about its decoding cost: a 113 KB all-zero PNG of
6300x6300 decodes to 119 MB of pixels, and re-encoding and the thumbnail copy them again.
Six such uploads at once once took a server from 156 MB to over 1 GB, and, decoded in the
default thread pool, kept password hashing (logins) waiting for seconds.

So photos are decoded in a thread pool of their own (``ImageWork.executor``, threads named
``image-*``), never in the default pool that hashes passwords, and under a
``PixelBudget``: the pixels of all the photos being decoded at once stay under a total.
A photo that does not fit waits for others to finish; one that cannot start within
``wait_seconds`` of its upload's arrival (queueing for a thread included) is refused with
``ImageBusy`` (the API answers ``503 busy``). A photo larger than the whole budget is decoded
alone.

The image threads run at a lower CPU priority (``nice`` +10) than the event loop's thread:
on a server with few cores, decoding photos would otherwise take turns on the CPU with the
loop that relays every signaling frame and answers every request, and a ``/ws`` ping waited
for the decoders' time slices (its p99 rose tenfold during ingest). Uploads still use every
idle cycle; they only yield when the loop has work.

Priority alone does not hand the CPU over at once: the kernel preempts a running thread for
one that woke only at its next tick (4 ms at 250 Hz) or when the running one enters the
kernel, and a decode or a seal otherwise runs for milliseconds in user space. So the image
and writer threads also yield the CPU (``os.sched_yield``) at each block a decode reads
(``images._BufferFile``) and each slice :func:`~woundcare.crypto.sealing.seal_into` seals, and
blobs are written a slice per call (``storage.files.WRITE_SLICE``): the loop's wait for a CPU
during ingest fell from a p99 of 3.0-3.6 ms to 0.8-1.1 ms (``perf sched``, issue 20).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from ..errors import WoundcareError


class ImageBusy(WoundcareError):
    """The pixel budget stayed spent for longer than an upload may wait."""

    code = "busy"
    status = 503
    message = "too many photos are being processed; please send it again shortly"


class PixelBudget:
    """Pixels being decoded at once, across threads; taken before a decode, returned after."""

    def __init__(self, total: int, wait_seconds: float) -> None:
        self.total = total
        self._wait_seconds = wait_seconds
        self._in_use = 0
        self._changed = threading.Condition()

    @property
    def in_use(self) -> int:
        return self._in_use

    @contextmanager
    def hold(self, pixels: int, *, since: float | None = None) -> Iterator[None]:
        """Block this (worker) thread until ``pixels`` fit, then hold them for the block.

        The wait is counted from ``since`` (``time.monotonic()``; default now): an upload that
        queued for a thread has spent part of its wait already."""
        wanted = min(max(pixels, 1), self.total)
        deadline = (time.monotonic() if since is None else since) + self._wait_seconds
        with self._changed:
            while self._in_use + wanted > self.total:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ImageBusy
                self._changed.wait(left)
            self._in_use += wanted
        try:
            yield
        finally:
            with self._changed:
                self._in_use -= wanted
                self._changed.notify_all()


NICENESS = 10
"""How much lower the image threads' CPU priority is than the server's (Linux ``nice``)."""


def _lower_priority() -> None:
    # On Linux a thread has its own nice value, set through its thread id; raising it needs
    # no privilege.
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + NICENESS)


WRITERS = 4
"""Threads that seal and write checked photos' blobs: a write mostly waits on the disk, so
several in flight keep it busy while the image threads decode the next photos."""


class ImageWork:
    """The image threads, their pixel budget and the threads that write their blobs; one per
    server."""

    def __init__(self, workers: int = 2, pixel_budget: int = 50_000_000, wait_seconds: float = 30.0) -> None:
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="image", initializer=_lower_priority)
        # Apart from the image threads, so a photo waiting on the disk holds none of them; at
        # the same lower priority, as sealing and copying megabytes is CPU work too.
        self.writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="photo-write", initializer=_lower_priority)
        self.budget = PixelBudget(pixel_budget, wait_seconds)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.writers.shutdown(wait=True)
