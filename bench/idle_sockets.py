"""Idle sockets: what one server process holds per connected, authenticated client.

N clients (10,000 by default) in N/2 consultation pairs, from several client processes,
connect and join (woundcare: token checked, consultation looked up, the join audited) and
then stay idle. The server's resident memory after they are in, minus before, over N is the
memory per socket; beside it the same for the bare aiohttp relay (the floor) and PeerJS.

    python -m bench.idle_sockets                 # 10,000 sockets
    python -m bench.idle_sockets --sockets 2000  # fewer
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.load_clients import ClientProcesses
from bench.load_servers import SERVERS, Woundcare, client_pairs, more_files, started, workspace

@dataclass(frozen=True, slots=True)
class Held:
    server: str
    sockets: int
    connect_seconds: float
    """Wall time until all were in."""
    connect_p50: float
    before: int
    after: int
    peak: int

    @property
    def per_socket(self) -> float:
        return (self.after - self.before) / self.sockets


def hold(name: str, sockets: int, processes: int, woundcare: Woundcare, workdir: Path) -> Held:
    with started(name, workdir, woundcare) as server:
        before = server.memory("VmRSS")
        fleet = ClientProcesses(name, client_pairs(name, server, woundcare, sockets // 2), processes)
        try:
            began = time.monotonic()
            seconds = [s for part in fleet.ask("connect") for s in part]
            elapsed = time.monotonic() - began
            server.settle()
            after = server.memory("VmRSS")
        finally:
            fleet.close()
        peak = server.memory("VmHWM")
    return Held(name, sockets, elapsed, statistics.median(seconds), before, after, peak)


def render(results: list[Held]) -> str:
    floor = next((r for r in results if r.server == "bare"), None)
    lines = [
        f"{results[0].sockets:,} idle sockets held by one server process (VmRSS after all joined, minus before, over N)",
        "",
        f"{'server':<10} {'all in':>8} {'connect p50':>12} {'RSS before':>11} {'RSS after':>10} {'VmHWM':>8} {'per socket':>11} {'vs bare':>8}",
    ]
    for r in results:
        ratio = f"{r.per_socket / floor.per_socket:.2f}" if floor is not None and floor.per_socket > 0 else "-"
        lines.append(
            f"{r.server:<10} {r.connect_seconds:>7.1f}s {r.connect_p50 * 1e3:>10.1f}ms {r.before / 2**20:>9.0f}MB "
            f"{r.after / 2**20:>8.0f}MB {r.peak / 2**20:>6.0f}MB {r.per_socket / 1024:>8.1f} KB {ratio:>8}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_sockets", description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=10_000, help="idle clients (even; default 10,000)")
    parser.add_argument("--processes", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--servers", type=lambda text: tuple(text.split(",")), default=SERVERS,
                        help=f"comma-separated, of {','.join(SERVERS)}")
    args = parser.parse_args(argv)
    if args.sockets < 2 or args.sockets % 2:
        parser.error("--sockets must be even and at least 2")
    more_files()
    results = []
    with workspace() as workdir:
        woundcare = Woundcare(workdir, args.sockets // 2)
        for name in args.servers:
            print(f"  {name} ...", file=sys.stderr, flush=True)
            results.append(hold(name, args.sockets, args.processes, woundcare, workdir))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
