"""Issue 15's HTTP findings, each against the real server: caching of patient data, errors
that echo input, bad static paths, response headers, /metrics, file modes, and the log line of
a failed integrity check."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.api.client import ApiClient
from tests.api.test_snapshots import Ward, open_ward, wound_jpeg
from tests.api.test_snapshots import ward  # noqa: F401  (the fixture: SQLite and PostgreSQL)
from woundcare.storage.blobs import BlobStore

ECHO = "ECHOx"
"""A marker in refused input that no answer may repeat."""


async def _snapshot(ward: Ward) -> str:
    response = await ward.upload(wound_jpeg(320, 240))
    assert response.status == 201, await response.text()
    return str((await response.json())["id"])


async def test_api_answers_are_neither_cached_nor_sniffed_and_name_no_server_version(ward: Ward) -> None:
    """Finding 4 and 11: ``no-store`` and ``nosniff`` on every API answer (patient data, the
    login's CSRF token, errors), no ``Server: Python/... aiohttp/...`` anywhere."""
    consultation = f"/api/consultations/{ward.consultation}"
    await ward.specialist.json("PUT", f"{consultation}/assessment", json={"woundType": "burn"})
    other = ApiClient(ward.server.url)
    login = await other.login("nurse", "snapshot test password")
    await other.close()
    answers = [login]
    for path in ("/api/patients", f"/api/patients/{ward.patient}", consultation, f"{consultation}/assessment",
                 f"/api/patients/{ward.patient}/timeline", f"{consultation}/snapshots", "/api/regions"):
        answers.append(await ward.nurse.request("GET", path))
    answers.append(await ward.nurse.request("GET", "/api/patients/nobody"))  # an error
    for response in answers:
        assert response.status in (200, 404), (response.url.path, response.status)
        assert response.headers["Cache-Control"] == "no-store", response.url.path
        assert response.headers["X-Content-Type-Options"] == "nosniff", response.url.path
    async with aiohttp.ClientSession() as session:
        for path in ("/", "/static/js/api.js", "/healthz", "/api/session"):
            async with session.get(ward.server.url + path) as response:
                assert response.headers["Server"] == "woundcare", path
    # A request the HTTP parser refuses is answered before any application code runs.
    reader, writer = await asyncio.open_connection("127.0.0.1", ward.server.settings.port)
    writer.write(b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n")
    head = (await reader.read(1000)).split(b"\r\n\r\n")[0].split(b"\r\n")
    writer.close()
    assert head[0].startswith(b"HTTP/1.") and b" 400 " in head[0]
    assert b"Server: woundcare" in head, head


async def test_errors_name_the_rule_never_the_input(ward: Ward) -> None:
    """Finding 8: an unknown field of an assessment, a quality sample or annotations is
    refused without quoting it."""
    snapshot = await _snapshot(ward)
    consultation = f"/api/consultations/{ward.consultation}"
    refused = [
        await ward.specialist.request("PUT", f"{consultation}/assessment", json={ECHO: 1}),
        await ward.specialist.request("PUT", f"{consultation}/assessment", json={"size": {ECHO: 1}}),
        await ward.nurse.request("POST", f"{consultation}/quality", json={"direction": "send", ECHO: 1}),
        await ward.specialist.request("PUT", f"/api/snapshots/{snapshot}/annotations", json={"items": [], ECHO: 1}),
        await ward.specialist.request("PUT", f"/api/snapshots/{snapshot}/annotations",
                                      json={"items": [{"kind": ECHO}]}),
    ]
    for response in refused:
        assert response.status == 400, (response.url.path, response.status)
        text = await response.text()
        assert ECHO.lower() not in text.lower(), text


async def test_bad_static_paths_are_404_and_log_no_error(start_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Finding 9: ``%00`` in an asset path was a 500 with a traceback at ERROR."""
    server = await start_server()
    async with aiohttp.ClientSession() as session:
        for path in ("/static/js/%00.js", "/static/%00/x.js", "/static/js/a%00b/c.js"):
            async with session.get(server.url + path) as response:
                assert response.status == 404, path
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_pages_may_connect_only_to_this_server(start_server: Any) -> None:
    """Finding 11: ``connect-src`` was ``'self' ws: wss:`` (any host)."""
    server = await start_server(public_url="https://woundcare.example.no")
    async with aiohttp.ClientSession() as session, session.get(server.url + "/specialist") as response:
        policy = dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    assert policy["connect-src"] == "'self' wss://woundcare.example.no"


async def test_metrics_answer_only_the_scraper_with_the_token(start_server: Any) -> None:
    """Finding 11: ``/metrics`` was open to anyone who reached the server."""
    closed = await start_server()
    guarded = await start_server(metrics_token="scrape token 1")
    async with aiohttp.ClientSession() as session:
        async with session.get(closed.url + "/metrics") as response:
            assert response.status == 404
        for headers, status in (
            ({}, 404),
            ({"Authorization": "Bearer wrong token"}, 404),
            ({"Authorization": "Bearer scrape token 1"}, 200),
        ):
            async with session.get(guarded.url + "/metrics", headers=headers) as response:
                assert response.status == status, headers


async def test_data_is_private_whatever_the_umask(start_server: Any, tmp_path: Path) -> None:
    """Finding 11: the SQLite database and its WAL were 0644 when started outside systemd."""
    old = os.umask(0o022)
    try:
        ward = await open_ward(await start_server(data_dir=tmp_path / "data"))
        await _snapshot(ward)
        await ward.nurse.close()
        await ward.specialist.close()
    finally:
        os.umask(old)
    seen = []
    for root, folders, files in os.walk(tmp_path / "data"):
        for name in folders + files:
            path = Path(root, name)
            seen.append(path.name)
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode & 0o077 == 0, f"{path.relative_to(tmp_path)} is {mode:o}"
    assert {"data", "woundcare.db", "woundcare.db-wal", "blobs", "master.key"} <= {*seen, "data"}
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700


async def test_a_tampered_blob_is_logged_without_patient_data(
    ward: Ward, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding 11: a failed integrity check was audited but never logged."""
    snapshot = await _snapshot(ward)
    store = BlobStore(ward.server.settings.blob_dir)
    (key,) = list(store.keys())
    path = next(ward.server.settings.blob_dir.glob(f"*/{key}"))
    tampered = bytearray(path.read_bytes())
    tampered[-20] ^= 0x01
    path.write_bytes(bytes(tampered))
    caplog.clear()
    response = await ward.specialist.request("GET", f"/api/snapshots/{snapshot}")
    assert response.status == 500 and (await response.json())["error"]["code"] == "integrity_error"
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "integrity" in r.getMessage()]
    assert lines, "no log line for the failed integrity check"
    assert not any(secret in line for line in lines for secret in ("Kari", "01018012371", snapshot, key))
