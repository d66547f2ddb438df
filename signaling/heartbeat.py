"""Liveness of every ``/ws`` socket, checked by one timer for the whole server.

Every half heartbeat interval a sweep looks at each open socket's
:attr:`~signaling.outlet.SocketOutlet.silence`, the sweeps since its reader last received a
frame (any frame: a pong, a ping, a message). A socket heard from since the last sweep
costs nothing; one quiet for two sweeps (half an interval to one) is pinged; one still quiet
at the next sweep, half an interval after the ping, is dropped
(:meth:`~signaling.outlet.SocketOutlet.lost`), and its reader holds the participant's place
for a resume as for any lost connection. So a dead peer is dropped between one and one and
a half intervals after it was last heard, as with aiohttp's own heartbeat (ping after one
interval, pong within half), without a timer, a ping task and a reset callback per socket
and per read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import suppress

from aiohttp import web

from .outlet import SocketOutlet

PING_AFTER = 2
"""Sweeps (half intervals) without a frame before a socket is pinged."""
DROP_AFTER = PING_AFTER + 1
"""Sweeps without a frame before it is dropped: half an interval to answer the ping."""


def sweep(outlets: Collection[SocketOutlet]) -> int:
    """One sweep: ping the quiet, drop the silent; returns how many were dropped."""
    dropped = 0
    # A copy: dropping a socket lets its reader leave the set while the sweep goes on.
    for outlet in tuple(outlets):
        silence = outlet.silence = outlet.silence + 1
        if silence == PING_AFTER:
            outlet.ping()
        elif silence >= DROP_AFTER and not outlet.closing:
            outlet.lost()
            dropped += 1
    return dropped


def beating(outlets: Collection[SocketOutlet], interval: float) -> Callable[[web.Application], AsyncIterator[None]]:
    """``cleanup_ctx``: sweep ``outlets`` every half ``interval`` while the application runs."""

    async def run(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_sweeping(outlets, interval / 2), name="signaling-heartbeat")
        yield
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    return run


async def _sweeping(outlets: Collection[SocketOutlet], period: float) -> None:
    while True:
        await asyncio.sleep(period)
        sweep(outlets)
