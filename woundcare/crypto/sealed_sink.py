"""The file a muxer writes a recording into: plaintext in, only sealed chunks to disk."""

from __future__ import annotations

from ..storage.blobs import BlobWriter
from .stream import CHUNK_SIZE, StreamSealer


class SealedSink:
    """A write-only, non-seekable file that seals as it goes.

    Plaintext waits in memory until a whole chunk has arrived; only its sealed form reaches
    the blob's temporary file. There is no ``seek`` or ``tell``, so a muxer given this file
    writes a streamable container front to back and never comes back to patch a header in
    the clear. :meth:`close` seals what is left as the final chunk.
    """

    def __init__(self, sealer: StreamSealer, out: BlobWriter, chunk_size: int = CHUNK_SIZE) -> None:
        self._sealer = sealer
        self._out = out
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        out.write(sealer.header())

    @property
    def closed(self) -> bool:
        return self._sealer.finished

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.closed:
            raise ValueError("write to a closed sink")
        self._buffer += data
        while len(self._buffer) >= self._chunk_size:
            self._out.write(self._sealer.seal(bytes(self._buffer[: self._chunk_size])))
            del self._buffer[: self._chunk_size]
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._out.write(self._sealer.seal(bytes(self._buffer), final=True))
            self._buffer.clear()
