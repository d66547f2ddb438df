"""``woundcare``: serve the app and administer it from the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web
from sqlalchemy import select

from signaling.protocol import Role

from .app import create_app
from .appkeys import DATABASE, SETTINGS
from .auth.invitations import Invitations
from .config import Settings
from .db.database import Database
from .db.models import Consultation, Region
from .demo import DEMO_LOGINS, DEMO_REGION, demo_consultation


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        key: value
        for key, value in {
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
            "data_dir": getattr(args, "data_dir", None),
            "database_url": getattr(args, "database_url", None),
        }.items()
        if value is not None
    }
    if getattr(args, "no_demo", False):
        overrides["demo"] = False
    return Settings(**overrides)


async def _banner(app: web.Application) -> None:
    settings = app[SETTINGS]
    lines = [f"woundcare listening on {settings.base_url}"]
    consultation = await demo_consultation(app[DATABASE]) if settings.demo else None
    if consultation is not None:
        lines.append(f"demo region '{DEMO_REGION}', demo consultation {consultation}")
        lines.append("demo logins (demo only; change or disable with --no-demo):")
        lines.extend(f"  {login.role.value:<11} {login.username} / {login.password}" for login in DEMO_LOGINS)
        lines.append(f"invitation token: woundcare invite {consultation} --role nurse")
    print("\n".join(lines), flush=True)


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    app = create_app(settings)
    app.on_startup.append(_banner)
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)
    return 0


async def _invite(settings: Settings, consultation: str, role: Role, name: str | None) -> str:
    db = Database(settings.db_url)
    await db.start()
    try:
        async with db.sessions() as session:
            region = await session.scalar(
                select(Region.code)
                .join(Consultation, Consultation.region_id == Region.id)
                .where(Consultation.id == consultation)
            )
    finally:
        await db.stop()
    if region is None:
        raise SystemExit("no such consultation")
    invitations = Invitations(settings.signing_key(), settings.invitation_ttl_seconds)
    return invitations.issue(
        consultation, role, f"inv-{secrets.token_hex(4)}", name or role.value.capitalize(), region
    )


def _invite_cmd(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(asyncio.run(_invite(settings, args.consultation, Role(args.role), args.name)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="woundcare", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, help="data folder (default ./var)")
    common.add_argument("--database-url", help="SQLAlchemy async URL (default SQLite in the data folder)")

    serve = sub.add_parser("serve", parents=[common], help="run the server")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--no-demo", action="store_true", help="do not create the demo data")
    serve.set_defaults(func=_serve)

    invite = sub.add_parser("invite", parents=[common], help="print an invitation token for a consultation")
    invite.add_argument("consultation")
    invite.add_argument("--role", choices=[r.value for r in Role], required=True)
    invite.add_argument("--name", help="display name shown to the others in the room")
    invite.set_defaults(func=_invite_cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
