"""deploy/nginx as shipped (paths and ports swapped for the test's): `nginx -t` passes and a
signaling join works over wss:// through it to the real app."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from signaling.protocol import Role
from tests.server import RunningServer
from tests.services import free_port, missing
from tests.tls import self_signed
from woundcare.appkeys import SERVICES
from woundcare.db.models import AuditEvent

DEPLOY = Path(__file__).parents[2] / "deploy" / "nginx"
METRICS_TOKEN = "nginx test metrics token"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        missing("nginx (Debian package nginx) is not installed")
    return found


def site_config(directory: Path, https_port: int, http_port: int, upstream_port: int) -> Path:
    """The shipped site file with only what a test must change: certificate paths, ports
    (loopback only), log paths."""
    cert, key = self_signed(directory)
    text = (DEPLOY / "woundcare.conf").read_text()
    replacements = {
        "/etc/woundcare/tls/fullchain.pem": str(cert),
        "/etc/woundcare/tls/privkey.pem": str(key),
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "server 127.0.0.1:8081 max_fails=2 fail_timeout=5s;": f"server 127.0.0.1:{upstream_port};",
        "server 127.0.0.1:8082 max_fails=2 fail_timeout=5s;": "",
        "/var/log/nginx/woundcare.access.log": str(directory / "access.log"),
    }
    for old, new in replacements.items():
        assert old in text, f"deploy/nginx/woundcare.conf no longer has {old!r}"
        text = text.replace(old, new)
    (directory / "woundcare.conf").write_text(text)
    main = directory / "nginx.conf"
    main.write_text(
        f"""daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {DEPLOY}/log-format.conf;
    include {directory}/woundcare.conf;
}}
"""
    )
    return main


@pytest.fixture
async def server(start_server: Any) -> RunningServer:
    """As deployed (deploy/systemd): the app believes the X-Forwarded-For of the nginx in front,
    and /metrics answers the scraper's token."""
    return await start_server(trusted_proxies=["127.0.0.1", "::1"], metrics_token=METRICS_TOKEN)


@pytest.fixture
async def nginx(server: RunningServer, tmp_path: Path) -> AsyncIterator[int]:
    binary = nginx_binary()
    https_port = free_port()
    config = site_config(tmp_path, https_port, free_port(), server.settings.port)
    check = subprocess.run([binary, "-t", "-c", str(config), "-p", str(tmp_path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    process = await asyncio.create_subprocess_exec(
        binary, "-c", str(config), "-p", str(tmp_path), stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(10):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", https_port)
                    writer.close()
                    break
                except OSError:
                    if process.returncode is not None:
                        pytest.fail((tmp_path / "error.log").read_text())
                    await asyncio.sleep(0.05)
        yield https_port
    finally:
        process.terminate()
        await process.wait()


async def test_signaling_join_over_wss_through_the_shipped_nginx(server: RunningServer, nginx: int, tmp_path: Path) -> None:
    consultation = await server.new_consultation()
    context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        async with session.get(f"https://localhost:{nginx}/healthz") as response:
            assert response.status == 200
            assert response.headers["Strict-Transport-Security"].startswith("max-age=")
            request_id = response.headers["X-Request-Id"]
        scraper = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        async with session.get(f"https://localhost:{nginx}/metrics", headers=scraper) as response:
            assert response.status == 200  # loopback is the monitoring network here
        ws = await session.ws_connect(f"wss://localhost:{nginx}/ws")
        await ws.send_json({"type": "join", "v": 1, "consultation": consultation, "role": "nurse",
                            "token": server.invite(consultation, Role.NURSE)})
        joined: dict[str, Any] = await ws.receive_json(timeout=5)
        assert joined["type"] == "joined" and joined["you"]["role"] == "nurse"
        await ws.close()
    log = (tmp_path / "access.log").read_text()
    assert f"rid={request_id}" in log  # nginx's request id is the app's
    assert "?" not in log  # no query strings in the access log


async def test_the_app_sees_the_client_address_nginx_saw_not_a_forged_one(
    server: RunningServer, nginx: int, tmp_path: Path
) -> None:
    context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    # The client comes from 127.0.0.3; nginx reaches the app from 127.0.0.1, a trusted proxy.
    connector = aiohttp.TCPConnector(ssl=context, family=socket.AF_INET, local_addr=("127.0.0.3", 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(
            f"https://localhost:{nginx}/api/session",
            json={"username": "nobody", "password": "wrong"},
            headers={"X-Forwarded-For": "203.0.113.9"},
        ) as response:
            assert response.status == 401
    async with server.app[SERVICES].database.sessions() as db:
        addresses = (await db.scalars(select(AuditEvent.address).where(AuditEvent.action == "login"))).all()
    assert addresses == ["127.0.0.3"]
