"""Backup and restore as docs/operations.md describes them (deploy/backup.sh, restore.sh):
dump, wipe, restore, and every record decrypts."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import asyncpg

from tests.records.test_rekey import fill, read_all
from tests.services import POSTGRES_ADMIN_DSN, missing, postgres_database

DEPLOY = Path(__file__).parents[2] / "deploy"


async def run(script: str, arg: Path, url: str, data_dir: Path) -> None:
    env = {**os.environ, "WOUNDCARE_DATABASE_URL": url, "WOUNDCARE_DATA_DIR": str(data_dir)}
    process = await asyncio.create_subprocess_exec(
        "bash", str(DEPLOY / script), str(arg), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()


async def test_backup_wipe_restore_and_everything_decrypts(start_server: Any, tmp_path: Path) -> None:
    for tool in ("pg_dump", "pg_restore"):
        if shutil.which(tool) is None:
            missing(f"{tool} (Debian package postgresql-client) is not installed")
    async for url in postgres_database():
        data_dir = tmp_path / "data"
        master_key = tmp_path / "master.key"
        server = await start_server(database_url=url, data_dir=data_dir, master_key_file=master_key)
        region = await fill(server, "east", 3)
        await server.stop()
        await run("backup.sh", tmp_path / "backup", url, data_dir)

        # Wipe: the database's tables and the data folder (the master key is kept apart).
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        name = url.rsplit("/", 1)[1]
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        secret = (data_dir / "secret.key").read_bytes()
        shutil.rmtree(data_dir)

        await run("restore.sh", tmp_path / "backup", url, data_dir)
        (data_dir / "secret.key").write_bytes(secret)
        restored = await start_server(database_url=url, data_dir=data_dir, master_key_file=master_key)
        await read_all(restored, region)
