"""A real coturn ``turnserver`` on loopback, for tests that need a TURN relay.

It runs as production does in the one way that matters here (``use-auth-secret`` with a
static secret, so it accepts exactly the TURN REST credentials ``signaling.turn`` makes)
and differs where a test must: loopback only (listening, relay and peers), no TLS, no CLI,
no configuration file, and every file it writes (log, pid, SQLite user db) in a temporary
folder. A wrong credential makes coturn answer ``401`` and aioice quietly gathers no relay
candidate, so tests must assert that relay candidates exist, never only that nothing failed.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from aioice import stun

from tests.services import missing

HOST = "127.0.0.1"
REALM = "woundcare.test"
RELAY_PORTS = 16
"""Relay endpoints on offer; each aiortc peer connection (bundled, rtcp-mux) takes one."""
LOG_TAIL_CHARS = 6000


class CoturnError(RuntimeError):
    """coturn did not start, or died while in use; the message carries its log."""


@dataclass(frozen=True, slots=True)
class Coturn:
    """A running ``turnserver``: where it listens and the secret it shares with the app."""

    port: int
    """UDP and TCP listening port on :data:`HOST`."""
    secret: str = field(repr=False)
    """``static-auth-secret``; give it to the app as ``turn_secret``."""
    relay_ports: range
    """Where coturn allocates relay endpoints: every relay candidate's port lies in here."""
    log_path: Path
    """coturn's stdout and stderr."""
    tls_port: int | None = None
    """TURN over TLS (TCP) on :data:`HOST`, when started with a certificate."""

    @property
    def url(self) -> str:
        """A ``turn_urls`` entry; aiortc reaches TURN over UDP."""
        return f"turn:{HOST}:{self.port}?transport=udp"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(coturn wrote no log)"

    async def wait_for_log(self, pattern: str, timeout: float = 2.0) -> bool:
        """Whether a line matching the regex ``pattern`` appears in the log within ``timeout``
        (coturn may log a reply just after sending it)."""
        regex = re.compile(pattern, re.MULTILINE)
        try:
            async with asyncio.timeout(timeout):
                while not regex.search(self.log()):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            return False
        return True

    def log_tail(self) -> str:
        text = self.log()
        return text if len(text) <= LOG_TAIL_CHARS else "...\n" + text[-LOG_TAIL_CHARS:]


def turnserver_path() -> str:
    """The ``turnserver`` binary; a skip (a failure in CI) when coturn is not installed."""
    path = shutil.which("turnserver") or next(
        (p for p in ("/usr/bin/turnserver", "/usr/sbin/turnserver") if Path(p).is_file()), None
    )
    if path is None:
        missing("coturn (Debian package coturn) is not installed")
    return path


def _ephemeral_floor() -> int:
    """The lowest port the kernel hands out for ``bind(0)``; ours stay below it, so aiortc's
    and aiohttp's own sockets cannot take a relay port between our check and coturn's bind."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_is_free(port: int, kinds: tuple[socket.SocketKind, ...]) -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                return False
    return True


def free_port_block(size: int, attempts: int = 200) -> range:
    """``size`` consecutive loopback ports, all free for UDP and TCP, below the ephemeral range."""
    top = _ephemeral_floor() - size
    kinds = (socket.SOCK_DGRAM, socket.SOCK_STREAM)
    for _ in range(attempts):
        start = random.randrange(10000, top)
        block = range(start, start + size)
        if all(_port_is_free(port, kinds) for port in block):
            return block
    raise CoturnError(f"no block of {size} free loopback ports found")


class _StunProbe(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answered = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        with suppress(ValueError):
            if stun.parse_message(data).message_class == stun.Class.RESPONSE:
                self.answered.set()


async def _answers_stun(port: int, wait: float) -> bool:
    """Whether a STUN Binding request to ``port`` over UDP gets a success response."""
    loop = asyncio.get_running_loop()
    transport, probe = await loop.create_datagram_endpoint(_StunProbe, remote_addr=(HOST, port))
    try:
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        transport.sendto(bytes(request))
        try:
            async with asyncio.timeout(wait):
                await probe.answered.wait()
        except TimeoutError:
            return False
        return True
    finally:
        transport.close()


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        async with asyncio.timeout(5):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()


@asynccontextmanager
async def running_coturn(
    workdir: Path, startup_timeout: float = 10.0, tls: tuple[Path, Path] | None = None,
    relay_ports: int = RELAY_PORTS,
) -> AsyncIterator[Coturn]:
    """Start ``turnserver`` on loopback, yield once it answers STUN, stop it on exit. With
    ``tls`` (certificate, key) it also takes TURN over TLS on :attr:`Coturn.tls_port`.

    Raises :class:`CoturnError` with coturn's log if it does not come up in
    ``startup_timeout`` or has died by the time the block ends.
    """
    binary = turnserver_path()
    workdir.mkdir(parents=True, exist_ok=True)
    ports = free_port_block(2 + relay_ports)
    turn = Coturn(
        port=ports[0],
        secret=secrets.token_urlsafe(24),
        relay_ports=ports[2:],
        log_path=workdir / "turnserver.log",
        tls_port=ports[1] if tls else None,
    )
    secure = ["--cert", str(tls[0]), "--pkey", str(tls[1]), "--tls-listening-port", str(ports[1])] if tls else ["--no-tls"]
    args = [
        "-n",  # never read /etc/turnserver.conf
        "--listening-ip", HOST,
        "--relay-ip", HOST,
        "--listening-port", str(turn.port),
        "--min-port", str(turn.relay_ports.start),
        "--max-port", str(turn.relay_ports.stop - 1),
        "--use-auth-secret",
        f"--static-auth-secret={turn.secret}",
        "--realm", REALM,
        "--fingerprint",
        "--allow-loopback-peers",  # both peers' relay endpoints are on 127.0.0.1
        "--no-multicast-peers",
        "--no-cli",
        *secure,
        "--no-dtls",
        "--no-rfc5780",  # else it wants an alternate port too
        "--no-software-attribute",
        "--relay-threads", "1",
        "--userdb", str(workdir / "turndb"),
        "--pidfile", str(workdir / "turnserver.pid"),
        "--log-file", "stdout",
        "--simple-log",
        "--verbose",
    ]
    with turn.log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            binary, *args, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
    try:
        await _wait_until_ready(turn, process, startup_timeout)
        yield turn
        if process.returncode is not None:
            raise CoturnError(
                f"turnserver died with exit code {process.returncode} during the test\n{turn.log_tail()}"
            )
    except BaseException as exc:
        if process.returncode is not None and not isinstance(exc, CoturnError):
            exc.add_note(f"turnserver had exited with code {process.returncode}; its log:\n{turn.log_tail()}")
        raise
    finally:
        await _stop(process)


async def _wait_until_ready(turn: Coturn, process: asyncio.subprocess.Process, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await _answers_stun(turn.port, 0.2):
                if process.returncode is not None:
                    raise CoturnError(
                        f"turnserver exited with code {process.returncode} at start-up\n{turn.log_tail()}"
                    )
    except TimeoutError:
        raise CoturnError(
            f"turnserver did not answer STUN on {HOST}:{turn.port} within {timeout} s\n{turn.log_tail()}"
        ) from None
