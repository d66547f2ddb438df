"""Signaling under load: woundcare beside the PeerJS server and a bare aiohttp relay.

For each N (200, 1000, 2000) and each server, in one run: a fresh server process on
loopback, N clients in N/2 consultation pairs spread over several client processes
(uvloop), then two phases:

``saturated``
    Every pair runs rounds back to back (offer and answer of about 3.5 KB, four ICE
    candidates each way: 10 relayed frames a round). Gives relayed frames per second and
    the server's CPU time (user + system, all threads, from /proc/<pid>/stat) per relayed
    frame over the measured window only.
``fixed rate``
    Rounds paced so that all pairs together relay ``--rate`` frames per second (2,000 by
    default). Gives relay latency p50/p95/p99 (send to arrival, per frame) and CPU per
    frame at that load.

Also: connect time per client (socket open to ``joined``/``OPEN``) and for all N (the first
socket opened to the last client in), the server's CPU per join (over the connect phase and
until the server has settled, over N) and per leave (every client leaves at once: woundcare's
send ``leave`` and wait for the close, the others close; until settled, over N), resident
memory added per connected client (VmRSS after connecting minus before, over N) and the peak
(VmHWM). The settings the bench changes on woundcare are printed with the table.

Servers are compared by CPU per frame at saturation (the clients share the machine, so
frames per second says as much about them as about the server) and by p99 at the fixed
rate; memory per client against the bare relay.

    python -m bench.signaling_load            # N = 200, 1000, 2000, 3 runs each (about 15 minutes)
    python -m bench.signaling_load --quick    # N = 20, short phases: a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load_clients import PER_ROUND, ClientProcesses
from bench.load_servers import (
    SERVERS,
    WOUNDCARE_CHANGED,
    RunningProcess,
    Woundcare,
    client_pairs,
    more_files,
    started,
    workspace,
)

CPU_PER_JOIN_TARGET = 0.5e-3
"""Seconds of server CPU a join (and a leave) may cost."""


@dataclass(frozen=True, slots=True)
class Profile:
    sizes: tuple[int, ...]
    processes: int
    warmup: float
    """Seconds of each phase before its measured window."""
    seconds: float
    """The measured window of each phase."""
    rate: float
    repeats: int = 1
    """Runs of every server at every N, interleaved; the table shows medians."""
    lead: float = 0.5
    """Seconds from sending a phase's command to its start, so that every client process starts together."""


FULL = Profile(sizes=(200, 1000, 2000), processes=4, warmup=1.5, seconds=5.0, rate=2000.0, repeats=3)
QUICK = Profile(sizes=(20,), processes=1, warmup=0.2, seconds=0.5, rate=400.0, lead=0.2)


@dataclass(frozen=True, slots=True)
class Phase:
    frames: int
    seconds: float
    cpu_seconds: float
    latencies: tuple[float, ...] = ()

    @property
    def per_second(self) -> float:
        return self.frames / self.seconds

    @property
    def cpu_per_frame(self) -> float:
        return self.cpu_seconds / self.frames if self.frames else float("nan")

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[q - 1]


@dataclass(frozen=True, slots=True)
class Run:
    server: str
    clients: int
    connect: tuple[float, ...]
    connect_all: float
    """Seconds from the first socket opened to the last client in."""
    cpu_per_join: float
    cpu_per_leave: float
    rss_per_client: float
    peak: int
    saturated: Phase
    fixed: Phase

    def connect_percentile(self, q: int) -> float:
        return statistics.quantiles(self.connect, n=100, method="inclusive")[q - 1]


def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _phase(server: RunningProcess, fleet: ClientProcesses, command: str, args: tuple[Any, ...],
           begin: float, start: float, end: float) -> Phase:
    fleet.send(command, *args, begin, start, end)
    _sleep_until(start)
    cpu_start = server.cpu_seconds()
    _sleep_until(end)
    cpu_end = server.cpu_seconds()
    results = fleet.gather()
    latencies = tuple(latency for _, part in results for latency in part)
    return Phase(sum(frames for frames, _ in results), end - start, cpu_end - cpu_start, latencies)


def measure(name: str, clients: int, profile: Profile, workdir: Path, woundcare: Woundcare) -> Run:
    pairs = clients // 2
    with started(name, workdir, woundcare) as server:
        before = server.memory("VmRSS")
        fleet = ClientProcesses(name, client_pairs(name, server, woundcare, pairs), profile.processes)
        try:
            cpu = server.cpu_seconds()
            started_at = time.monotonic()
            connect = tuple(s for part in fleet.ask("connect") for s in part)
            connect_all = time.monotonic() - started_at
            server.settle()
            cpu_per_join = (server.cpu_seconds() - cpu) / clients
            rss_per_client = (server.memory("VmRSS") - before) / clients
            begin = time.monotonic() + profile.lead
            start = begin + profile.warmup
            saturated = _phase(server, fleet, "saturate", (), begin, start, start + profile.seconds)
            begin = time.monotonic() + profile.lead
            start = begin + profile.warmup
            fixed = _phase(server, fleet, "fixed", (profile.rate, pairs), begin, start, start + profile.seconds)
            server.settle()
            cpu = server.cpu_seconds()
            left = sum(fleet.ask("leave"))
            server.settle()
            cpu_per_leave = (server.cpu_seconds() - cpu) / left
        finally:
            fleet.close()
        peak = server.memory("VmHWM")
    return Run(name, clients, connect, connect_all, cpu_per_join, cpu_per_leave, rss_per_client, peak, saturated, fixed)


def measure_all(profile: Profile, servers: Sequence[str], progress: bool = True) -> list[Run]:
    """Every server at every N, ``repeats`` times; each repeat starts with another server,
    so that the machine's noise falls on all of them alike."""
    more_files()
    runs = []
    with workspace() as workdir:
        woundcare = Woundcare(workdir, max(profile.sizes) // 2)
        for clients in profile.sizes:
            for repeat in range(profile.repeats):
                shift = repeat % len(servers)
                for name in (*servers[shift:], *servers[:shift]):
                    if progress:
                        print(f"  N={clients} {name} ({repeat + 1}/{profile.repeats}) ...", file=sys.stderr, flush=True)
                    runs.append(measure(name, clients, profile, workdir, woundcare))
    return runs


@dataclass(frozen=True, slots=True)
class Summary:
    """Medians over the repeats of one server at one N."""

    server: str
    clients: int
    runs: tuple[Run, ...]

    def median(self, value: Callable[[Run], float]) -> float:
        return statistics.median(value(run) for run in self.runs)

    @property
    def cpu_per_frame(self) -> float:
        return self.median(lambda run: run.saturated.cpu_per_frame)

    @property
    def p99(self) -> float:
        return self.median(lambda run: run.fixed.percentile(99))

    @property
    def memory_per_client(self) -> float:
        return self.median(lambda run: run.rss_per_client)

    @property
    def connect_all(self) -> float:
        return self.median(lambda run: run.connect_all)

    @property
    def cpu_per_join(self) -> float:
        return self.median(lambda run: run.cpu_per_join)

    @property
    def cpu_per_leave(self) -> float:
        return self.median(lambda run: run.cpu_per_leave)


def summarize(runs: list[Run]) -> list[Summary]:
    keys = list(dict.fromkeys((run.server, run.clients) for run in runs))
    return [Summary(name, clients, tuple(r for r in runs if (r.server, r.clients) == (name, clients)))
            for name, clients in keys]


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs else "-"


def render(runs: list[Run], profile: Profile) -> str:
    header = ("N", "server", "connect p50/p99 ms", "sat. frames/s", "CPU µs/frame", "fixed-rate p50/p95/p99 ms",
              "CPU µs/frame", "KB/client", "VmHWM MB", "all in s", "CPU ms/join", "CPU ms/leave")
    rows = [header]
    summaries = sorted(summarize(runs), key=lambda s: s.clients)
    for summary in summaries:
        m = summary.median
        rows.append((
            str(summary.clients),
            summary.server,
            f"{m(lambda r: r.connect_percentile(50)) * 1e3:.1f} / {m(lambda r: r.connect_percentile(99)) * 1e3:.1f}",
            f"{m(lambda r: r.saturated.per_second):,.0f}",
            f"{summary.cpu_per_frame * 1e6:.1f}",
            " / ".join(f"{m(lambda r, q=q: r.fixed.percentile(q)) * 1e3:.2f}" for q in (50, 95, 99)),
            f"{m(lambda r: r.fixed.cpu_per_frame) * 1e6:.1f}",
            f"{summary.memory_per_client / 1024:.1f}",
            f"{m(lambda r: r.peak) / 2**20:.0f}",
            f"{summary.connect_all:.2f}",
            f"{summary.cpu_per_join * 1e3:.2f}",
            f"{summary.cpu_per_leave * 1e3:.2f}",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        f"signaling load: N clients in N/2 pairs, {PER_ROUND} relayed frames a round (offer and answer "
        f"~3.5 KB, 4 candidates each way), {profile.processes} client processes; saturated and fixed-rate "
        f"({profile.rate:,.0f} frames/s) phases of {profile.seconds:g} s after {profile.warmup:g} s warm-up; "
        f"medians of {profile.repeats} interleaved run(s)",
        "",
    ]
    for row in rows:
        lines.append("  ".join(cell.rjust(width) if i > 1 else cell.ljust(width)
                               for i, (cell, width) in enumerate(zip(row, widths))).rstrip())
    by_key = {(s.server, s.clients): s for s in summaries}
    if "woundcare" in {s.server for s in summaries}:
        lines += ["", "woundcare / other (lower is better; targets: CPU/frame and p99 <= PeerJS's, "
                      "all in <= 2x PeerJS's, memory/client <= the bare relay's):"]
        for clients in profile.sizes:
            ours = by_key.get(("woundcare", clients))
            for other in ("peerjs", "bare"):
                theirs = by_key.get((other, clients))
                if ours is None or theirs is None:
                    continue
                lines.append(
                    f"  N={clients:<5} vs {other:<6}  CPU/frame saturated {_ratio(ours.cpu_per_frame, theirs.cpu_per_frame)}"
                    f"   p99 at fixed rate {_ratio(ours.p99, theirs.p99)}"
                    f"   memory/client {_ratio(ours.memory_per_client, theirs.memory_per_client)}"
                    f"   all in {_ratio(ours.connect_all, theirs.connect_all)}"
                )
        lines += ["", f"woundcare server CPU per join and per leave (target <= {CPU_PER_JOIN_TARGET * 1e3:g} ms):"]
        for clients in profile.sizes:
            ours = by_key.get(("woundcare", clients))
            if ours is not None:
                lines.append(
                    f"  N={clients:<5} join {ours.cpu_per_join * 1e3:.2f} ms "
                    f"({'met' if ours.cpu_per_join <= CPU_PER_JOIN_TARGET else 'missed'})   "
                    f"leave {ours.cpu_per_leave * 1e3:.2f} ms "
                    f"({'met' if ours.cpu_per_leave <= CPU_PER_JOIN_TARGET else 'missed'})"
                )
        changed = " ".join(f"{k}={v}" for k, v in WOUNDCARE_CHANGED.items())
        lines += ["", f"woundcare settings changed for the bench: {changed}"]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.signaling_load", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 20 and short phases: a smoke run")
    parser.add_argument("--sizes", type=lambda text: tuple(int(n) for n in text.split(",")),
                        help="comma-separated client counts (even), e.g. 200,2000")
    parser.add_argument("--servers", type=lambda text: tuple(text.split(",")), default=SERVERS,
                        help=f"comma-separated, of {','.join(SERVERS)}")
    parser.add_argument("--processes", type=int, help="client processes (default 4; quick 2)")
    parser.add_argument("--seconds", type=float, help="length of each measured phase (default 10)")
    parser.add_argument("--rate", type=float, help="relayed frames per second in the fixed-rate phase (default 2000)")
    parser.add_argument("--repeats", type=int, help="interleaved runs of each server at each N (default 3; quick 1)")
    args = parser.parse_args(argv)
    unknown = set(args.servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    if args.sizes and any(n < 2 or n % 2 for n in args.sizes):
        parser.error("client counts must be even and at least 2")
    return args


def profile_from(args: argparse.Namespace) -> Profile:
    base = QUICK if args.quick else FULL
    return Profile(
        sizes=args.sizes or base.sizes,
        processes=args.processes or base.processes,
        warmup=base.warmup,
        seconds=args.seconds or base.seconds,
        rate=args.rate or base.rate,
        repeats=args.repeats or base.repeats,
        lead=base.lead,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    profile = profile_from(args)
    runs = measure_all(profile, args.servers)
    print(render(runs, profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
