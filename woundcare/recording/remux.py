"""Finishing a recording: the browser's WebM parts, as uploaded and sealed, made into one
seekable WebM without decoding a frame, in a process of its own.

The upload is one sealed stream (``woundcare/crypto/stream.py``) of records, each a piece of
one part (a part is what one ``MediaRecorder`` made: a page reloaded mid-recording starts the
next)::

    offset  size  field
    0       4     part, big-endian
    4       4     n, big-endian length of the piece
    8       n     the piece: bytes of that part's WebM, in order

:func:`remux` opens the parts in memory, copies their packets (VP8 video, Opus audio) into a
new WebM with each part's times moved to follow the previous one, and lets the muxer, writing
into memory it can seek in, add the duration and the Cues a player seeks with. The result is
sealed as a new stream under a new key (a stream key seals one stream only) and written as a
blob: no byte of media reaches the disk in the clear.

It runs in a :class:`Remuxer`'s worker process, never in the server's event loop or its
threads, so a long recording's finish delays no relay; the worker is replaced after a few
recordings, so whatever a native library keeps after one is given back.
"""

from __future__ import annotations

import asyncio
import ctypes
import io
import multiprocessing
import os
import signal
import struct
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from typing import TYPE_CHECKING

from ..crypto.sealed_sink import SealedSink
from ..crypto.stream import StreamSealer, open_cut_short, open_stream
from ..records.recordings import Finished, Upload
from ..storage.blobs import BlobStore

if TYPE_CHECKING:
    import av

_PIECE = struct.Struct(">II")
TASKS_PER_WORKER = 8
"""Recordings a worker process finishes before it is replaced by a fresh one."""


def piece(part: int, data: bytes) -> bytes:
    """One uploaded piece of ``part``, framed for the upload stream."""
    return _PIECE.pack(part, len(data)) + data


def remux(job: Upload) -> Finished:
    """The worker's task: the upload opened, copied into one WebM, sealed and stored."""
    import av  # in the worker only: the server's own process never loads PyAV
    store = BlobStore(job.root)
    # An upload a crash cut off ends without its final chunk: what it holds is kept.
    read_stream = open_cut_short if job.cut_short else open_stream
    with store.reader(job.upload) as file:
        parts = _parts(read_stream(job.upload_key, job.upload_binding, file.read))
    media = io.BytesIO()
    frames = audio = 0
    size: tuple[int, int] | None = None
    with av.open(media, mode="w", format="webm") as output:
        video_out: av.VideoStream | None = None
        audio_out: av.AudioStream | None = None
        offset = Fraction(0)
        for data in parts:
            end = offset
            with av.open(io.BytesIO(data), mode="r", format="webm") as container:
                video_in = next(iter(container.streams.video), None)
                audio_in = next(iter(container.streams.audio), None)
                if video_out is None and video_in is not None:
                    video_out = output.add_stream_from_template(video_in)
                    size = (video_in.codec_context.width, video_in.codec_context.height)
                if audio_out is None and audio_in is not None:
                    audio_out = output.add_stream_from_template(audio_in)
                targets = {s.index: t for s, t in ((video_in, video_out), (audio_in, audio_out)) if s and t}
                start: Fraction | None = None
                for packet in _packets(container, list(s for s in (video_in, audio_in) if s)):
                    target = targets.get(packet.stream.index)
                    if target is None or packet.pts is None:
                        continue
                    base = packet.time_base
                    at = packet.pts * base
                    start = at if start is None else start
                    moved = offset + max(at - start, Fraction(0))
                    end = max(end, moved + (packet.duration or 0) * base)
                    packet.pts = packet.dts = round(moved / base)
                    packet.stream = target
                    output.mux(packet)
                    if target is video_out:
                        frames += 1
                    else:
                        audio += 1
            offset = end
    sink_writer = store.writer(job.out)
    try:
        sealer = StreamSealer(job.out_binding)
        sink = SealedSink(sealer, sink_writer)
        view = media.getbuffer()
        for begin in range(0, len(view), 1 << 20):
            sink.write(view[begin : begin + (1 << 20)])
        del view
        sink.close()
        sink_writer.commit()
    except BaseException:
        sink_writer.abort()
        raise
    width, height = size if size else (None, None)
    return Finished(sealer.key, sink_writer.size, frames, audio, width, height, float(offset))


def _parts(chunks: Iterator[bytes]) -> list[bytes]:
    """The upload's pieces put together, part by part in the order of their numbers."""
    buffer = bytearray()
    parts: dict[int, bytearray] = {}
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= _PIECE.size:
            part, length = _PIECE.unpack_from(buffer)
            if len(buffer) < _PIECE.size + length:
                break
            parts.setdefault(part, bytearray()).extend(buffer[_PIECE.size : _PIECE.size + length])
            del buffer[: _PIECE.size + length]
    return [bytes(parts[n]) for n in sorted(parts)]


def _packets(container: av.container.InputContainer, streams: list[av.stream.Stream]) -> Iterator[av.Packet]:
    """The part's packets until its end, or until a last piece cut short (a closed tab)."""
    import av
    demuxed = container.demux(*streams)
    while True:
        try:
            packet = next(demuxed)
        except (StopIteration, av.error.FFmpegError):
            return
        if packet.size:
            yield packet


def _die_with_parent() -> None:
    """In the worker: be killed when the server's process ends, however it ends (its task
    pipe never reports a dead server: the worker holds both of its ends)."""
    if sys.platform == "linux":
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the server was gone before the line above took effect
        os._exit(0)


class Remuxer:
    """The worker process that finishes recordings, one at a time, started on first use."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, job: Upload) -> Finished:
        if self._pool is None:
            # spawn: a clean child, not a copy of a process with an event loop and threads. Not
            # forkserver: its server and a worker keep each other alive after this process is
            # killed (the worker holds the server's liveness pipe, and both ends of its own
            # task pipe), so every SIGKILL left a pair behind. The worker is a direct child
            # that dies with this process (:func:`_die_with_parent`).
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                1, mp_context=context, initializer=_die_with_parent, max_tasks_per_child=TASKS_PER_WORKER
            )
        return await asyncio.get_running_loop().run_in_executor(self._pool, remux, job)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=False)
            self._pool = None
