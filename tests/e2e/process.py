"""The real server as a child process, to be killed like a crashing machine would kill it.

``ServerProcess`` runs ``python -m woundcare serve`` with its settings in the environment,
waits until ``GET /api/session`` answers, and stops it with SIGKILL (a crash: no cleanup, no
flush) or SIGTERM (a graceful stop). Its stdout and stderr go to a log file, not a pipe, so a
chatty server never blocks on a full pipe; the log is quoted whenever the process misbehaves.

``woundcare_cli`` runs the administration commands the same way, for the users a test needs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import aiohttp

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_SECONDS = 20.0
"""How long a start may take, migrations included, before the test fails."""
EXIT_SECONDS = 10.0
"""How long a signalled process may take to be gone."""


class ServerFailed(AssertionError):
    """The server did not start, or did not stop; the message carries its output."""


def child_environ(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any ``WOUNDCARE_*`` of its own, plus ``settings``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WOUNDCARE_")}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), environ.get("PYTHONPATH")]))
    environ["PYTHONUNBUFFERED"] = "1"
    environ.update(settings)
    return environ


class ServerProcess:
    """One ``woundcare serve`` child; ``start`` may be called again after it was stopped."""

    def __init__(self, *, data_dir: Path, database_url: str, instance: str, port: int, log_path: Path,
                 settings: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.instance = instance
        self.port = port
        self.log_path = log_path
        self.settings = dict(settings or {})
        """More ``WOUNDCARE_*`` settings for this server."""
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The running server's process id (its /proc entry)."""
        assert self._process is not None and self._process.returncode is None, "the server is not running"
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def environ(self) -> dict[str, str]:
        return child_environ(
            {
                "WOUNDCARE_DATA_DIR": str(self.data_dir),
                "WOUNDCARE_PORT": str(self.port),
                "WOUNDCARE_DATABASE_URL": self.database_url,
                "WOUNDCARE_INSTANCE": self.instance,
                "WOUNDCARE_DEMO": "false",
                **self.settings,
            }
        )

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    async def start(self, timeout: float = READY_SECONDS) -> None:
        """Start the server and wait until it answers; fail with its output if it does not."""
        if self.running:
            raise RuntimeError("the server is already running")
        with self.log_path.open("ab") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')} ---\n".encode())
            log.flush()
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "woundcare", "serve",
                cwd=REPO_ROOT,
                env=self.environ(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            await self._wait_ready(timeout)
        except BaseException:
            await self.kill()
            raise

    async def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        probe = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=probe) as session:
            while True:
                code = self._process.returncode if self._process else None
                if code is not None:
                    raise ServerFailed(f"the server exited with {code} while starting:\n{self.output()}")
                try:
                    async with session.get(f"{self.url}/api/session") as response:
                        if response.status == 401:
                            return
                        last = f"GET /api/session answered {response.status}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    last = f"{type(exc).__name__}: {exc}"
                if time.monotonic() > deadline:
                    raise ServerFailed(
                        f"the server did not answer GET /api/session with 401 within {timeout:.0f} s "
                        f"(last: {last}):\n{self.output()}"
                    )
                await asyncio.sleep(0.1)

    async def kill(self) -> int | None:
        """SIGKILL: the crash. Returns the exit status, None if nothing was running."""
        return await self._signal(signal.SIGKILL)

    async def terminate(self) -> int | None:
        """SIGTERM: the graceful stop aiohttp's ``run_app`` handles."""
        return await self._signal(signal.SIGTERM)

    async def _signal(self, signum: signal.Signals) -> int | None:
        process, self._process = self._process, None
        if process is None:
            return None
        if process.returncode is None:
            process.send_signal(signum)
        try:
            return await asyncio.wait_for(process.wait(), EXIT_SECONDS)
        except TimeoutError:
            process.kill()
            await asyncio.wait_for(process.wait(), EXIT_SECONDS)
            raise ServerFailed(
                f"the server outlived {signum.name} by {EXIT_SECONDS:.0f} s:\n{self.output()}"
            ) from None


async def woundcare_cli(*args: str, environ: Mapping[str, str], timeout: float = 60.0) -> str:
    """Run ``python -m woundcare ARGS``; returns its output, fails with it on a non-zero exit."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "woundcare", *args,
        cwd=REPO_ROOT,
        env=dict(environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"woundcare {args[0]} {args[1]} did not finish within {timeout:.0f} s") from None
    text = out.decode(errors="replace")
    if process.returncode != 0:
        # Only the command words: the arguments may name a user, the output never holds the password.
        raise AssertionError(f"woundcare {args[0]} {args[1]} exited with {process.returncode}:\n{text}")
    return text
