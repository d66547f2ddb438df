"""Which TURN transport the camera uses: UDP when it gets through, else TCP, else TLS.

aiortc uses only the first ``turn:``/``turns:`` URL of its configuration, and a TURN
allocation over UDP that is silently dropped (mobile carriers, guest Wi-Fi, hospital
firewalls) takes aioice half a minute to give up, after which the call has no relay at all.
So before each (re)connection the camera asks the TURN server one STUN Binding over UDP
and, without an answer within two seconds, puts the TCP (then TLS) URL first.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from contextlib import suppress
from typing import Any

from aioice import stun
from aiortc.rtcicetransport import parse_stun_turn_uri

log = logging.getLogger(__name__)


class TurnTransport(str, enum.Enum):
    AUTO = "auto"
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


def _transport(url: str) -> TurnTransport | None:
    """The transport of a TURN URL, ``None`` for STUN or what aiortc cannot use."""
    try:
        parsed = parse_stun_turn_uri(url)
    except ValueError:
        return None
    if parsed["scheme"] == "turns":
        return TurnTransport.TLS if parsed["transport"] == "tcp" else None
    if parsed["scheme"] == "turn":
        return TurnTransport(parsed["transport"]) if parsed["transport"] in ("udp", "tcp") else None
    return None


def reorder(servers: list[dict[str, Any]], first: list[TurnTransport]) -> list[dict[str, Any]]:
    """``servers`` with each entry's TURN URLs sorted by ``first`` (others keep their order
    after them), and the entry holding the preferred URL moved to the front."""

    def rank(url: str) -> int:
        transport = _transport(url)
        return first.index(transport) if transport in first else len(first)

    ordered = []
    for server in servers:
        urls = server["urls"] if isinstance(server["urls"], list) else [server["urls"]]
        ordered.append({**server, "urls": sorted(urls, key=rank)})
    return sorted(ordered, key=lambda s: min(map(rank, s["urls"]), default=len(first)))


class _Answer(asyncio.DatagramProtocol):
    def __init__(self, transaction: bytes) -> None:
        self._transaction = transaction
        self.answered = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        with suppress(ValueError):
            if stun.parse_message(data).transaction_id == self._transaction:
                self.answered.set()


async def answers_udp(host: str, port: int, timeout: float = 2.0, resend: float = 0.25) -> bool:
    """Whether a STUN server answers a Binding request over UDP within ``timeout`` seconds.

    The request is sent again every ``resend`` seconds (the same transaction, as STUN
    retransmits) and any answer counts: on a rural link that drops one packet in ten, two
    tries a second apart both failed for about one connection in 27 (a request or its answer
    lost each time), and the camera then sent its video over TCP, where loss turns into
    stalls that the adaptation cannot see as loss. Eight tries fail about once in 600,000.
    """
    loop = asyncio.get_running_loop()
    message = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request = bytes(message)
    try:
        transport, answer = await loop.create_datagram_endpoint(
            lambda: _Answer(message.transaction_id), remote_addr=(host, port)
        )
    except OSError:
        return False
    deadline = loop.time() + timeout
    try:
        while (left := deadline - loop.time()) > 0:
            transport.sendto(request)
            try:
                async with asyncio.timeout(min(resend, left)):
                    await answer.answered.wait()
                return True
            except TimeoutError:
                continue
        return False
    finally:
        transport.close()


async def prefer(servers: list[dict[str, Any]], transport: TurnTransport = TurnTransport.AUTO) -> list[dict[str, Any]]:
    """The ICE servers ordered so that aiortc takes the TURN transport that works here."""
    if transport is not TurnTransport.AUTO:
        return reorder(servers, [transport])
    udp = next(
        (url for s in servers for url in (s["urls"] if isinstance(s["urls"], list) else [s["urls"]])
         if _transport(url) is TurnTransport.UDP),
        None,
    )
    if udp is None:
        return reorder(servers, [TurnTransport.TCP, TurnTransport.TLS])
    parsed = parse_stun_turn_uri(udp)
    if await answers_udp(parsed["host"], parsed["port"]):
        return reorder(servers, [TurnTransport.UDP, TurnTransport.TCP, TurnTransport.TLS])
    log.warning("TURN does not answer over UDP; using TCP/TLS")
    return reorder(servers, [TurnTransport.TCP, TurnTransport.TLS])
