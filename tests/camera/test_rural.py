"""The head camera on a rural link: its own network namespace, joined to the server by a
veth link the test degrades (loss, rate cap, delay, a 20 s cut, UDP blocked).

Paths: the camera reaches the server and coturn only through delay relays listening on
the link's host address; coturn and the server listen on loopback. The specialist (this
process) offers only a 127.0.0.1 host candidate, which the namespace cannot reach, so the
video must come through the camera's TURN allocation, across the degraded link.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.camera.scene import Visit, home_visit, next_of
from tests.coturn import Coturn, running_coturn
from tests.netns import Link, namespace
from tests.relay import tcp_delay, udp_delay
from tests.server import RunningServer
from tests.services import free_port
from tests.tls import self_signed

pytestmark = pytest.mark.usefixtures("loopback_ice")

DELAY = 0.150
"""Added in each direction by the relays."""


@dataclass
class Rural:
    link: Link
    coturn: Coturn
    server: RunningServer
    server_url: str
    """The server as the namespace sees it: through the delayed link."""
    ca_file: Path | None = None
    """With TLS: the TURN server's certificate, for the camera to trust."""


@contextlib.asynccontextmanager
async def rural_link(
    tmp_path: Path, start_server: Callable[..., Awaitable[RunningServer]], *, tls: bool = False
) -> AsyncIterator[Rural]:
    """The link, coturn and the server. TURN is offered over UDP and TCP, or with ``tls``
    over UDP and TLS on port 443 (as a hospital firewall allows), never plain TCP."""
    with namespace() as link:
        certificate = self_signed(tmp_path / "tls", (link.host,)) if tls else None
        async with running_coturn(tmp_path / "coturn", tls=certificate) as coturn:
            web_port, turn_udp = free_port(), free_port()
            turn_tcp = 443 if tls else free_port()
            second = f"turns:{link.host}:{turn_tcp}?transport=tcp" if tls else f"turn:{link.host}:{turn_tcp}?transport=tcp"
            server = await start_server(
                turn_urls=[f"turn:{link.host}:{turn_udp}?transport=udp", second],
                turn_secret=coturn.secret,
                turn_ttl_seconds=600,
            )
            async with (
                tcp_delay((link.host, web_port), ("127.0.0.1", server.settings.port), DELAY),
                udp_delay((link.host, turn_udp), ("127.0.0.1", coturn.port), DELAY),
                tcp_delay((link.host, turn_tcp), ("127.0.0.1", coturn.tls_port or coturn.port), DELAY),
            ):
                yield Rural(link, coturn, server, f"http://{link.host}:{web_port}",
                            certificate[0] if certificate else None)


async def frames_arrive(visit: Visit, count: int, timeout: float) -> int:
    """Until the viewer's current track has decoded ``count`` more frames; how many it had."""
    assert visit.viewer is not None
    async with asyncio.timeout(timeout):
        await visit.viewer.video.wait()
        counter = visit.viewer.counter
        assert counter is not None
        start = counter.frames
        while counter.frames < start + count:
            visit.assert_camera_running()
            await asyncio.sleep(0.1)
    return start


async def test_a_degraded_link_gets_the_low_profile_and_the_call_survives_a_20_s_cut(
    tmp_path: Path, start_server: Callable[..., Awaitable[RunningServer]]
) -> None:
    async with rural_link(tmp_path, start_server) as rural, home_visit(rural.server, tmp_path) as visit:
        rural.link.degrade(loss_percent=10, rate_kbit=1000)
        visit.start_camera(rural.server_url, "--width", "1280", "--height", "720",
                           prefix=rural.link.command())
        try:
            await visit.join_specialist(90)
            await frames_arrive(visit, 20, 90)
            # Over UDP, where the loss shows in receiver reports (over TCP it would be stalls).
            assert "TURN does not answer over UDP" not in visit.camera_log()

            # Measured loss and round trip choose the low profile without anyone asking.
            chosen = await next_of(visit.inbox, "video_profile", timeout=60, active="low")
            assert chosen["mode"] == "auto", chosen
            await frames_arrive(visit, 30, 60)  # the picture keeps moving
            counter = visit.viewer.counter if visit.viewer else None
            assert counter is not None and counter.last_size is not None
            # Frames of the old size may still be queued on the 1 Mbit/s link (its buffer holds
            # seconds of them on a busy machine): the low size comes, and stays.
            async with asyncio.timeout(30):
                while counter.last_size is None or max(counter.last_size) > 640:
                    await asyncio.sleep(0.1)
            await frames_arrive(visit, 10, 60)
            assert max(counter.last_size) <= 640
            assert rural.link.dropped() > 0  # the loss rule really dropped packets

            # A dead zone: nothing gets through for 20 s.
            consultation = visit.consultation
            generation = visit.viewer.generation if visit.viewer else None
            rural.link.cut()
            cut_at = time.monotonic()
            gone = await next_of(visit.inbox, "presence", timeout=25, state="reconnecting")
            assert gone["participant"]["role"] == "nurse"
            await asyncio.sleep(max(0.0, 20 - (time.monotonic() - cut_at)))
            rural.link.restore(loss_percent=10)

            back = await next_of(visit.inbox, "presence", timeout=90, state="rejoined")
            assert back["participant"]["role"] == "nurse"
            assert visit.viewer is not None
            async with asyncio.timeout(60):  # the camera offers a fresh peer connection
                while visit.viewer.generation == generation:
                    await asyncio.sleep(0.1)
            await frames_arrive(visit, 20, 90)
            visit.assert_camera_running()  # no one restarted it
            queue = (await visit.spes.json("GET", "/api/consultations/queue"))["consultations"]
            assert [c["id"] for c in queue] == [consultation]  # the same consultation, no new one
        except BaseException:
            print(visit.camera_log()[-8000:])
            raise


# What coturn logs for the device's (d<id>) allocation: any TCP client (its listener line
# names TCP too, so not that), or a session whose cipher shows TLS.
_OVER = {
    "tcp": r"tcp or tls connected to",
    "tls": r"username=<\d+:d\d+>, lifetime=\d+, cipher=\S+, method=TLSv1\.[23]",
}


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_with_udp_blocked_the_camera_reaches_turn_over_tcp_or_tls_on_443(
    tmp_path: Path, start_server: Callable[..., Awaitable[RunningServer]], transport: str
) -> None:
    async with (
        rural_link(tmp_path, start_server, tls=transport == "tls") as rural,
        home_visit(rural.server, tmp_path) as visit,
    ):
        rural.link.block_udp()
        env = {"SSL_CERT_FILE": str(rural.ca_file)} if rural.ca_file else None
        visit.start_camera(rural.server_url, "--width", "640", "--height", "360", prefix=rural.link.command(), env=env)
        try:
            await visit.join_specialist(60)
            await frames_arrive(visit, 30, 60)
            assert "TURN does not answer over UDP" in visit.camera_log()
            assert rural.link.dropped() > 0  # the probe's UDP was dropped
            assert await rural.coturn.wait_for_log(_OVER[transport], timeout=5), rural.coturn.log_tail()
        except BaseException:
            print(visit.camera_log()[-8000:])
            raise
