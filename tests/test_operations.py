"""Health, readiness and metrics of the real server."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from signaling.protocol import Role
from tests.server import RunningServer
from tests.services import POSTGRES_ADMIN_DSN, postgres_database


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_health_and_readiness(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/healthz") as response:
            assert response.status == 200 and (await response.json())["status"] == "ok"
            assert len(response.headers["X-Request-Id"]) >= 8
        async with session.get(f"{server.url}/readyz", headers={"X-Request-Id": "trace-123456"}) as response:
            body = await response.json()
            assert response.status == 200, body
            assert body["checks"] == {"database": "ok", "redis": "ok", "keys": "ok"}
            assert response.headers["X-Request-Id"] == "trace-123456"


async def test_unready_without_its_database_and_while_draining(start_server: Any) -> None:
    async for url in postgres_database():
        server = await start_server(database_url=url)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/readyz") as response:
                assert response.status == 200
            admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
            try:
                await admin.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
            finally:
                await admin.close()
            async with session.get(f"{server.url}/readyz") as response:
                body = await response.json()
            assert response.status == 503 and body["checks"]["database"] != "ok"
            assert body["checks"]["keys"] != "ok"  # the keys live in that database too
            await server.app.shutdown()
            async with session.get(f"{server.url}/readyz") as response:
                assert (await response.json())["draining"] is True


METRICS_TOKEN = "metrics test token"


async def test_metrics_parse_and_move(start_server: Any) -> None:
    server = await start_server(metrics_token=METRICS_TOKEN)
    consultation = await server.new_consultation()
    scraper = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/metrics") as response:
            assert response.status == 404  # only for the scraper holding the token
        async with session.get(f"{server.url}/metrics", headers=scraper) as response:
            before = samples(await response.text())
        ws = await session.ws_connect(f"{server.url}/ws")
        await ws.send_json({"type": "join", "v": 1, "consultation": consultation, "role": "nurse",
                            "token": server.invite(consultation, Role.NURSE)})
        assert (await ws.receive_json(timeout=5))["type"] == "joined"
        await ws.send_json({"type": "chat", "text": "hei"})
        await ws.send_str("{not json")
        assert (await ws.receive_json(timeout=5))["code"] == "bad_json"
        async with session.get(f"{server.url}/api/session") as response:
            assert response.status == 401
        async with session.get(f"{server.url}/metrics", headers=scraper) as response:
            after = samples(await response.text())
        await ws.close()
    joined = ("woundcare_room_events_total", (("kind", "joined"), ("role", "nurse")))
    assert after[joined] == before.get(joined, 0) + 1
    unauthorized = ("woundcare_http_requests_total", (("route", "/api/session"), ("status", "401")))
    assert after[unauthorized] == before.get(unauthorized, 0) + 1
    assert after[("woundcare_messages_relayed_total", ())] == before.get(("woundcare_messages_relayed_total", ()), 0) + 1
    assert after[("woundcare_signaling_errors_total", (("code", "bad_json"),))] == 1
    assert after[("woundcare_ws_sockets", ())] == 1
    assert after[("woundcare_rooms", ())] == 1
