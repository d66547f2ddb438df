"""The three signaling servers the load benches drive, each started as its own process on
loopback so that its CPU time and memory can be read from ``/proc/<pid>``.

``woundcare``
    The real server (``python -m woundcare serve``) with authentication, validation,
    ordering and audit on, on a throwaway SQLite data folder prepared with consultations
    and invitation tokens. Only the per-socket rate limit is raised so that it does not bind
    (its bucket still runs for every frame), and the join timeout, so that thousands of
    clients joining at once wait for admission instead of being turned away.
``peerjs``
    The PeerJS server (npm package ``peer``, pinned in ``bench/peerjs/package.json``),
    installed into ``bench/peerjs/node_modules`` with npm when missing.
``bare``
    ``bench.bare_relay``, the floor for this stack.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.common import free_port

SERVERS = ("woundcare", "peerjs", "bare")
PEERJS_DIR = Path(__file__).with_name("peerjs")
PEERJS_BIN = PEERJS_DIR / "node_modules" / "peer" / "dist" / "bin" / "peerjs.js"
RATE_THAT_DOES_NOT_BIND = 100_000
WOUNDCARE_CHANGED = {
    "WOUNDCARE_RATE_PER_SECOND": str(RATE_THAT_DOES_NOT_BIND),
    "WOUNDCARE_RATE_BURST": str(RATE_THAT_DOES_NOT_BIND),
    # Thousands of joins at once queue for admission; the benches measure them, not time them out.
    "WOUNDCARE_JOIN_TIMEOUT_SECONDS": "120",
}
"""The only settings the benches change from woundcare's defaults (besides where its data
and port are): the per-socket rate limit, so that it does not bind (its bucket still runs
for every frame), and the join timeout."""
_TICK = os.sysconf("SC_CLK_TCK")


def more_files() -> None:
    """Thousands of sockets: raise this process's (and its children's) open-file limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@dataclass(frozen=True, slots=True)
class Client:
    """How one client reaches a server; picklable, for the client processes."""

    url: str
    join: str | None = None
    """The frame to send once connected (woundcare's ``join``)."""
    ready: str | None = None
    """The start of the frame that says the client is in (``joined``, PeerJS's ``OPEN``)."""
    id: str | None = None
    """The client's id, when the client chooses it (PeerJS, bare); else learnt from ``ready``."""


@dataclass
class RunningProcess:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User plus system time of the whole process (every thread), from /proc."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK

    def memory(self, field: str) -> int:
        """``VmRSS`` or ``VmHWM`` (peak resident) in bytes."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field} for {self.name}")

    def settle(self, idle_share: float = 0.05, sample: float = 0.25, seconds: float = 60.0) -> None:
        """Wait until the server uses under ``idle_share`` of a core: what the joins left
        behind (audit rows) must not count as the exchange's cost."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            before = self.cpu_seconds()
            time.sleep(sample)
            if self.cpu_seconds() - before < idle_share * sample:
                return

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _wait_for_port(running: RunningProcess, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            break
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", running.port)) == 0:
                return
        time.sleep(0.05)
    running.stop()
    tail = running.log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{running.name} did not start on port {running.port}:\n{tail}")


def _spawn(name: str, argv: list[str], port: int, workdir: Path, env: dict[str, str] | None = None) -> RunningProcess:
    log = workdir / f"{name}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir)
    running = RunningProcess(name, process, port, log)
    _wait_for_port(running)
    return running


def ensure_peerjs() -> Path:
    """The PeerJS server, installed with npm from bench/peerjs/package.json when missing."""
    if not PEERJS_BIN.exists():
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            raise RuntimeError("PeerJS needs node and npm (Debian: apt-get install nodejs npm)")
        lock = PEERJS_DIR / "package-lock.json"
        command = [npm, "ci" if lock.exists() else "install", "--no-audit", "--no-fund", "--loglevel=error"]
        subprocess.run(command, cwd=PEERJS_DIR, check=True, stdout=subprocess.DEVNULL)
    return PEERJS_BIN


class Woundcare:
    """A data folder with ``pairs`` waiting consultations and both invitations of each; every
    server started runs on a copy of it as it was prepared."""

    def __init__(self, workdir: Path, pairs: int) -> None:
        self.data_dir = workdir / "woundcare"
        self.rooms: list[tuple[str, str, str]] = asyncio.run(self._prepare(pairs))
        self._runs = 0

    async def _prepare(self, pairs: int) -> list[tuple[str, str, str]]:
        from signaling.protocol import Role
        from tests.server import RunningServer
        from woundcare.appkeys import SERVICES
        from woundcare.config import Settings
        from woundcare.db.models import Consultation, Patient
        from woundcare.demo import DEMO_REGION

        server = await RunningServer.start(Settings(port=free_port(), data_dir=self.data_dir, demo=False))
        try:
            region = await server.region(DEMO_REGION)
            async with server.app[SERVICES].database.sessions() as session, session.begin():
                patients = [Patient(region_id=region) for _ in range(pairs)]
                session.add_all(patients)
                await session.flush()
                consultations = [Consultation(region_id=region, patient_id=p.id) for p in patients]
                session.add_all(consultations)
                await session.flush()
                ids = [c.id for c in consultations]
            return [
                (
                    consultation,
                    server.invite(consultation, Role.NURSE, subject=f"bench-nurse-{index}", name="Bench nurse"),
                    server.invite(consultation, Role.SPECIALIST, subject=f"bench-spes-{index}", name="Bench spes"),
                )
                for index, consultation in enumerate(ids)
            ]
        finally:
            await server.stop()

    def start(self, workdir: Path) -> RunningProcess:
        # A run's first joins start their calls (a session-log write more, the webhook event
        # of each start): in the prepared folder itself, a second run would find them started
        # and measure cheaper joins than the first.
        self._runs += 1
        data_dir = workdir / f"woundcare-run-{self._runs}"
        shutil.copytree(self.data_dir, data_dir)
        port = free_port()
        env = dict(
            os.environ,
            WOUNDCARE_DATA_DIR=str(data_dir),
            WOUNDCARE_PORT=str(port),
            WOUNDCARE_DEMO="false",
            **WOUNDCARE_CHANGED,
            PYTHONPATH=str(Path(__file__).resolve().parent.parent),
        )
        return _spawn("woundcare", [sys.executable, "-m", "woundcare", "serve"], port, workdir, env)

    def clients(self, port: int, pairs: int) -> list[tuple[Client, Client]]:
        url = f"ws://127.0.0.1:{port}/ws"

        def join(consultation: str, role: str, token: str) -> str:
            return (
                f'{{"type":"join","v":1,"consultation":"{consultation}","role":"{role}","token":"{token}"}}'
            )

        return [
            (
                Client(url, join(consultation, "nurse", nurse), '{"type":"joined"'),
                Client(url, join(consultation, "specialist", specialist), '{"type":"joined"'),
            )
            for consultation, nurse, specialist in self.rooms[:pairs]
        ]


def start_peerjs(workdir: Path) -> RunningProcess:
    port = free_port()
    argv = ["node", str(ensure_peerjs()), "--host", "127.0.0.1", "--port", str(port),
            "--alive_timeout", "3600000", "--concurrent_limit", "100000"]
    return _spawn("peerjs", argv, port, workdir)


def peerjs_clients(port: int, pairs: int, prefix: str) -> list[tuple[Client, Client]]:
    def client(name: str) -> Client:
        url = f"ws://127.0.0.1:{port}/peerjs?key=peerjs&id={name}&token=t{name}"
        return Client(url, ready='{"type":"OPEN"', id=name)

    return [(client(f"{prefix}{i}a"), client(f"{prefix}{i}b")) for i in range(pairs)]


def start_bare(workdir: Path) -> RunningProcess:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    return _spawn("bare", [sys.executable, "-m", "bench.bare_relay", "--port", str(port)], port, workdir, env)


def bare_clients(port: int, pairs: int, prefix: str) -> list[tuple[Client, Client]]:
    def client(name: str) -> Client:
        return Client(f"ws://127.0.0.1:{port}/ws?id={name}", id=name)

    return [(client(f"{prefix}{i}a"), client(f"{prefix}{i}b")) for i in range(pairs)]


@contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="woundcare-load-") as folder:
        yield Path(folder)


@contextmanager
def started(name: str, workdir: Path, woundcare: Woundcare) -> Iterator[RunningProcess]:
    """One of :data:`SERVERS`, stopped on leaving."""
    server = woundcare.start(workdir) if name == "woundcare" else start_peerjs(workdir) if name == "peerjs" else start_bare(workdir)
    try:
        yield server
    finally:
        server.stop()


def client_pairs(name: str, server: RunningProcess, woundcare: Woundcare, count: int) -> list[tuple[Client, Client]]:
    if name == "woundcare":
        return woundcare.clients(server.port, count)
    if name == "peerjs":
        return peerjs_clients(server.port, count, "p")
    return bare_clients(server.port, count, "p")
