"""Parse + validate time per client frame: the pydantic models beside the hand-written parser.

``signaling.protocol.parse`` (pydantic models, :mod:`signaling.strict`) and the hand-written
parser it replaced, read from git (``--old``, the last commit that had it) into a module of
its own, parse the same frames in one process: a call's frames (``join``, an aiortc offer
and answer, trickled candidates, ``end_of_candidates``, chat, a video profile), interleaved
run by run (old, new, new, old, ...) so noise from the machine falls on both, timed in
CPU time of the thread (what a parse costs the server, not its wait for a core). Before timing,
both must read every frame to the same wire form.

Prints the median time per frame of each kind and of the call's mix, and the ratio
new / old (target: at most 1.10, the pydantic models not more than 10 % slower).

    python -m bench.protocol_parse             # 15 runs of 2000 parses per kind and side
    python -m bench.protocol_parse --runs 31
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

from signaling import protocol

OLD_REVISION = "fafa932"
"""The last commit with the hand-written parser (``signaling/protocol.py``)."""
TARGET = 1.10
ROOT = Path(__file__).resolve().parent.parent


def load_old(revision: str) -> ModuleType:
    """The hand-written ``signaling/protocol.py`` of ``revision``, as a module of its own
    (it imports only the standard library and orjson)."""
    source = subprocess.run(
        ["git", "show", f"{revision}:signaling/protocol.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "hand_protocol.py")
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("bench_hand_protocol", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while they are built
        spec.loader.exec_module(module)
    return module


async def aiortc_sdps() -> tuple[str, str]:
    """A real offer (video, audio, with host candidates) and its answer, from aiortc."""
    from aiortc import RTCPeerConnection

    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    try:
        offerer.addTransceiver("video", direction="sendonly")
        offerer.addTransceiver("audio", direction="sendrecv")
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        return offerer.localDescription.sdp, answerer.localDescription.sdp
    finally:
        await offerer.close()
        await answerer.close()


def call_frames(offer: str, answer: str) -> dict[str, tuple[str, int]]:
    """Each kind of frame in a call, with how many of it one call's two peers send."""

    def frame(**fields: Any) -> str:
        return orjson.dumps(fields).decode()

    candidate = "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0"
    return {
        "join": (frame(type="join", v=1, consultation="c_7Hq2x9", role="specialist", token="t" * 320), 2),
        "offer": (frame(type="offer", to="p_3fa8", sdp=offer, pc=1), 1),
        "answer": (frame(type="answer", to="p_9c1e", sdp=answer, pc=1), 1),
        "candidate": (frame(type="candidate", to="p_3fa8", candidate=candidate, sdpMid="0", sdpMLineIndex=0, pc=1), 16),
        "end_of_candidates": (frame(type="end_of_candidates", to="p_3fa8", pc=1), 2),
        "chat": (frame(type="chat", text="Kan du vise sårkanten nærmere?"), 2),
        "video_profile": (frame(type="video_profile", to="p_3fa8", mode="low"), 1),
    }


def per_frame(parse: Callable[[str], object], raw: str, count: int) -> float:
    """CPU seconds per parse, over ``count`` parses. CPU time, not the wall clock: on this
    shared 2-core machine a process waits for a core for longer than a parse takes, and
    the wait is not the parser's."""
    started = time.thread_time()
    for _ in range(count):
        parse(raw)
    return (time.thread_time() - started) / count


def same_reading(old: ModuleType, frames: dict[str, tuple[str, int]]) -> None:
    for kind, (raw, _) in frames.items():
        mine, theirs = protocol.to_wire(protocol.parse(raw)), old.to_wire(old.parse(raw))
        if mine != theirs:
            raise SystemExit(f"{kind}: the parsers disagree")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.protocol_parse", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per kind and side, at least 5 (default 15)")
    parser.add_argument("--parses", type=int, default=2000, help="parses per run (default 2000)")
    parser.add_argument("--old", default=OLD_REVISION, help=f"git revision of the hand parser (default {OLD_REVISION})")
    args = parser.parse_args(argv)
    if args.runs < 5 or args.parses < 1:
        parser.error("at least 5 runs (for a median) and 1 parse per run")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    old = load_old(args.old)
    frames = call_frames(*asyncio.run(aiortc_sdps()))
    same_reading(old, frames)
    sides: dict[str, Callable[[str], object]] = {"hand (old)": old.parse, "pydantic (new)": protocol.parse}
    for raw, _ in frames.values():  # warm-up: first-use paths of both
        for parse in sides.values():
            per_frame(parse, raw, 200)
    medians: dict[str, dict[str, float]] = {side: {} for side in sides}
    for kind, (raw, _) in frames.items():
        times: dict[str, list[float]] = {side: [] for side in sides}
        for run in range(args.runs):
            # Each side goes first in every other run, so neither always follows the other.
            for side in sorted(sides, reverse=run % 2 == 1):
                times[side].append(per_frame(sides[side], raw, args.parses))
        for side in sides:
            medians[side][kind] = statistics.median(times[side])
    weights = {kind: n for kind, (_, n) in frames.items()}
    total = sum(weights.values())
    for side in sides:
        medians[side]["call mix"] = sum(medians[side][k] * n for k, n in weights.items()) / total

    old_side, new_side = sides
    print(f"parse + validate per client frame (CPU time), median of {args.runs} runs x {args.parses} parses, interleaved")
    print(f"hand parser from git {args.old}; offer/answer SDP from aiortc ({len(frames['offer'][0])} / "
          f"{len(frames['answer'][0])} bytes framed)\n")
    print(f"{'frame':<20}{'bytes':>7}{old_side:>14}{new_side:>16}{'new/old':>10}")
    for kind in [*frames, "call mix"]:
        size = f"{len(frames[kind][0])}" if kind in frames else f"{total} fr"
        a, b = medians[old_side][kind], medians[new_side][kind]
        print(f"{kind:<20}{size:>7}{a * 1e6:>12.2f}us{b * 1e6:>14.2f}us{b / a:>10.2f}")
    # The other per-frame cost the models took over: the relayed frame's wire form.
    candidate = frames["candidate"][0]
    relays = {"hand (old)": (old.relay_frame, old.parse(candidate)), "pydantic (new)": (protocol.relay_frame, protocol.parse(candidate))}
    relay_times: dict[str, list[float]] = {side: [] for side in relays}
    for run in range(args.runs):
        for side in sorted(relays, reverse=run % 2 == 1):
            make, message = relays[side]
            relay_times[side].append(per_frame(lambda _: make(message, "p_9c1e"), candidate, args.parses))
    a, b = (statistics.median(relay_times[side]) for side in (old_side, new_side))
    print(f"{'relay_frame (cand.)':<20}{'':>7}{a * 1e6:>12.2f}us{b * 1e6:>14.2f}us{b / a:>10.2f}")
    ratio = medians[new_side]["call mix"] / medians[old_side]["call mix"]
    print(f"\nratio new/old on a call's mix: {ratio:.2f}   target <= {TARGET:.2f}: {'met' if ratio <= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
