"""TURN REST credentials: the HMAC itself, ``GET /api/ice-servers``, and a real coturn.

The relay tests are the issue's "done when": a nurse and a specialist that may use relay
candidates only fetch their credentials from the API, meet through ``/ws``, and video flows
through coturn. A bad credential fails silently in coturn and aioice (no candidate, no
error), so every relay test asserts on the candidates themselves.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from signaling.protocol import Role
from signaling.turn import ice_servers as build_ice_servers
from signaling.turn import turn_credential
from tests.coturn import Coturn
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.auth.invitations import Invitations
from woundcare.webrtc.client import SignalingClient
from woundcare.camera.peer import Publisher
from woundcare.webrtc.peer import Viewer, ice_configuration, pump, shutdown
from woundcare.camera.synthetic import SyntheticVideoTrack

pytestmark = pytest.mark.usefixtures("loopback_ice")

StartServer = Callable[..., Awaitable[RunningServer]]

SECRET = b"woundcare-test-secret"
# printf '1700000600:u42' | openssl dgst -sha1 -hmac woundcare-test-secret -binary | base64
KNOWN_PASSWORD = "YwJrn+kSx2AmxJ+edXZMhE1Mhm8="

_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ (\S+) \d+ (\S+) (\d+) typ (\S+)", re.MULTILINE)


def expected_password(secret: bytes, username: str) -> str:
    return base64.b64encode(hmac.new(secret, username.encode(), hashlib.sha1).digest()).decode()


def candidates(sdp: str, kind: str) -> list[tuple[str, int]]:
    """``(host, port)`` of every ``a=candidate`` line of type ``kind`` in ``sdp``."""
    return [(host, int(port)) for _, host, port, typ in _CANDIDATE.findall(sdp) if typ == kind]


def selected_pair_types(pc: RTCPeerConnection) -> tuple[str, str]:
    """(local, remote) candidate types of the pair ICE nominated. aiortc has no public
    getStats for this, so it reads aiortc/aioice internals; it must run before ``pc.close()``."""
    connection = pc.getTransceivers()[0].sender.transport.transport._connection
    pair = connection._nominated[1]
    return pair.local_candidate.type, pair.remote_candidate.type


async def fetch_ice_servers(session: aiohttp.ClientSession, server: RunningServer, token: str) -> list[dict[str, Any]]:
    async with session.get(f"{server.url}/api/ice-servers", headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    servers: list[dict[str, Any]] = body["iceServers"]
    return servers


async def gather_relay_candidates(servers: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """Gather with a relay-only RTCPeerConnection and return its relay candidates."""
    pc = RTCPeerConnection(ice_configuration(servers, relay_only=True))
    try:
        pc.createDataChannel("probe")
        async with asyncio.timeout(10):
            await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        assert candidates(sdp, "host") == [] and candidates(sdp, "srflx") == []
        return candidates(sdp, "relay")
    finally:
        await pc.close()


# --- credentials -------------------------------------------------------------------------


def test_turn_credential_is_hmac_sha1_of_username() -> None:
    cred = turn_credential(SECRET, "u42", 600, now=1_700_000_000)
    assert cred.username == "1700000600:u42"
    assert cred.credential == KNOWN_PASSWORD
    assert cred.credential == expected_password(SECRET, cred.username)


def test_turn_credential_expiry_is_whole_seconds_after_now() -> None:
    cred = turn_credential(SECRET, "d7", 60, now=1000.9)
    assert cred.expires_at == 1060
    assert cred.username == "1060:d7"

    before = int(time.time())
    cred = turn_credential(SECRET, "d7", 3600)
    assert before + 3600 <= cred.expires_at <= int(time.time()) + 3600
    assert cred.username == f"{cred.expires_at}:d7"


@pytest.mark.parametrize("ttl", [0, -1])
def test_turn_credential_needs_a_positive_ttl(ttl: int) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        turn_credential(SECRET, "u1", ttl)


def test_turn_credential_rejects_colon_in_user() -> None:
    # coturn splits the username at the first ':'; a ':' in the user would forge the expiry.
    with pytest.raises(ValueError, match="':'"):
        turn_credential(SECRET, "u1:9999999999", 600)


def test_ice_servers_omits_turn_without_secret() -> None:
    stun = ["stun:127.0.0.1:3478"]
    turn = ["turn:127.0.0.1:3478?transport=udp"]
    assert build_ice_servers(stun, turn, None, "u1", 600) == [{"urls": stun}]
    assert build_ice_servers(stun, turn, b"", "u1", 600) == [{"urls": stun}]
    assert build_ice_servers([], turn, None, "u1", 600) == []
    assert build_ice_servers([], [], SECRET, "u1", 600) == []


def test_ice_servers_lists_stun_then_turn_with_credential() -> None:
    stun = ["stun:127.0.0.1:3478"]
    turn = ["turn:127.0.0.1:3478?transport=udp", "turns:turn.example.test:443?transport=tcp"]
    servers = build_ice_servers(stun, turn, SECRET, "u42", 600, now=1_700_000_000)
    assert servers == [
        {"urls": stun},
        {"urls": turn, "username": "1700000600:u42", "credential": KNOWN_PASSWORD},
    ]


# --- GET /api/ice-servers ----------------------------------------------------------------


async def _get_ice_servers(server: RunningServer, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    async with (
        asyncio.timeout(5),
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/api/ice-servers", headers=headers) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.json()


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwdw=="])
async def test_ice_servers_without_bearer_token_is_unauthorized(
    server: RunningServer, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    status, _, body = await _get_ice_servers(server, headers)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"


async def test_ice_servers_with_forged_token_is_token_invalid(server: RunningServer) -> None:
    consultation = await server.new_consultation()
    forged = Invitations(b"not the server's key", 3600).issue(
        consultation, Role.SPECIALIST, "u1", "Mallory", "test"
    )
    status, _, body = await _get_ice_servers(server, {"Authorization": f"Bearer {forged}"})
    assert (status, body["error"]["code"]) == (401, "token_invalid")


async def test_ice_servers_with_expired_token_is_token_expired(server: RunningServer) -> None:
    consultation = await server.new_consultation()
    expired = server.app[SERVICES].invitations.issue(
        consultation, Role.NURSE, "d1", "Camera", "test", ttl_seconds=60, now=time.time() - 3600
    )
    status, _, body = await _get_ice_servers(server, {"Authorization": f"Bearer {expired}"})
    assert (status, body["error"]["code"]) == (401, "token_expired")


async def test_ice_servers_gives_short_lived_turn_credential(start_server: StartServer) -> None:
    secret = "correct horse battery staple"
    stun = ["stun:127.0.0.1:3478"]
    turn = ["turn:127.0.0.1:3478?transport=udp"]
    server = await start_server(stun_urls=stun, turn_urls=turn, turn_secret=secret, turn_ttl_seconds=600)
    consultation = await server.new_consultation()
    token = server.invite(consultation, Role.SPECIALIST)

    before = int(time.time())
    status, headers, body = await _get_ice_servers(server, {"Authorization": f"Bearer {token}"})
    after = int(time.time())

    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    assert body["ttlSeconds"] == 600
    assert body["iceServers"][0] == {"urls": stun}
    entry = body["iceServers"][1]
    assert entry["urls"] == turn
    expiry, _, user = entry["username"].partition(":")
    assert user == "test-specialist"
    assert before + 600 <= int(expiry) <= after + 600
    assert entry["credential"] == expected_password(secret.encode(), entry["username"])
    assert len(body["iceServers"]) == 2


async def test_ice_servers_without_turn_secret_gives_no_turn(server: RunningServer) -> None:
    consultation = await server.new_consultation()
    token = server.invite(consultation, Role.NURSE)
    status, headers, body = await _get_ice_servers(server, {"Authorization": f"Bearer {token}"})
    assert (status, headers["Cache-Control"], body["iceServers"]) == (200, "no-store", [])


# --- a real coturn -----------------------------------------------------------------------


@pytest.mark.coturn
@pytest.mark.parametrize("case", ["valid", "wrong_secret", "expired"])
async def test_relay_candidate_only_with_valid_credential(
    coturn: Coturn, start_server: StartServer, case: str
) -> None:
    secret = "not coturn's secret" if case == "wrong_secret" else coturn.secret
    server = await start_server(turn_urls=[coturn.url], turn_secret=secret)
    consultation = await server.new_consultation()
    token = server.invite(consultation, Role.NURSE)
    async with aiohttp.ClientSession() as session, asyncio.timeout(5):
        servers = await fetch_ice_servers(session, server, token)
    if case == "expired":
        stale = turn_credential(coturn.secret.encode(), "test-nurse", 600, now=time.time() - 86400)
        assert stale.expires_at < time.time()
        servers = [{"urls": [coturn.url], "username": stale.username, "credential": stale.credential}]
    assert [s["urls"] for s in servers] == [[coturn.url]]
    username = servers[0]["username"]

    relays = await gather_relay_candidates(servers)

    if case == "valid":
        assert len(relays) == 1, coturn.log_tail()
        host, port = relays[0]
        assert host == "127.0.0.1" and port in coturn.relay_ports
    else:
        assert relays == []
        # coturn got the request with this username and refused it: "no relay candidate"
        # because of the credential, not because nothing reached coturn.
        refused = rf"<{re.escape(username)}>.*error 401"
        assert await coturn.wait_for_log(refused), coturn.log_tail()


@pytest.mark.coturn
async def test_video_flows_through_coturn_with_relay_only_peers(coturn: Coturn, start_server: StartServer) -> None:
    server = await start_server(turn_urls=[coturn.url], turn_secret=coturn.secret, turn_ttl_seconds=600)
    consultation = await server.new_consultation()
    # Invitation subjects, not "u<id>"/"d<id>": those name real users and devices at join.
    nurse_token = server.invite(consultation, Role.NURSE)
    specialist_token = server.invite(consultation, Role.SPECIALIST)

    nurse_client = SignalingClient(server.url)
    specialist_client = SignalingClient(server.url)
    camera: Publisher | None = None
    viewer: Viewer | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(5):
            nurse_servers = await fetch_ice_servers(session, server, nurse_token)
            specialist_servers = await fetch_ice_servers(session, server, specialist_token)
        assert nurse_servers[0]["username"].endswith(":test-nurse")
        assert specialist_servers[0]["username"].endswith(":test-specialist")

        camera = Publisher(
            nurse_client, SyntheticVideoTrack(640, 480), ice_configuration(nurse_servers, relay_only=True)
        )
        viewer = Viewer(specialist_client, ice_configuration(specialist_servers, relay_only=True))
        async with asyncio.timeout(5):
            await nurse_client.join(consultation, Role.NURSE, nurse_token)
        tasks.append(asyncio.create_task(pump(nurse_client, camera)))
        async with asyncio.timeout(5):
            await specialist_client.join(consultation, Role.SPECIALIST, specialist_token)
        tasks.append(asyncio.create_task(pump(specialist_client, viewer)))

        # Offer and answer each carry their side's candidates: fail here, with coturn's log,
        # if a side got no relay candidate, rather than after a long wait for frames.
        async with asyncio.timeout(10):
            while viewer.pc is None or viewer.pc.localDescription is None:
                await asyncio.sleep(0.02)
        camera_pc = camera.connection(specialist_client.participant or "")
        viewer_pc = viewer.pc
        assert camera_pc is not None and camera_pc.localDescription is not None
        for side, pc in (("camera", camera_pc), ("viewer", viewer_pc)):
            sdp = pc.localDescription.sdp
            relays = candidates(sdp, "relay")
            assert relays, f"the {side} gathered no relay candidate; coturn's log:\n{coturn.log_tail()}"
            assert all(host == "127.0.0.1" and port in coturn.relay_ports for host, port in relays), relays
            assert candidates(sdp, "host") == [] and candidates(sdp, "srflx") == []

        try:
            async with asyncio.timeout(15):
                counter = await viewer.frames(10)
        except TimeoutError:
            pytest.fail(
                f"fewer than 10 frames in 15 s (ICE: camera {camera_pc.iceConnectionState}, "
                f"viewer {viewer_pc.iceConnectionState}); coturn's log:\n{coturn.log_tail()}"
            )
        assert counter.size == (640, 480)
        assert viewer.pc is viewer_pc
        assert selected_pair_types(camera_pc) == ("relay", "relay")
        assert selected_pair_types(viewer_pc) == ("relay", "relay")
    finally:
        await shutdown(tasks, camera, viewer, nurse_client, specialist_client)
