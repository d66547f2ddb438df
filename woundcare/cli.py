"""``woundcare``: serve the app and administer it from the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import secrets
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from signaling.protocol import Role

from . import logs
from .api.health import DRAINING
from .app import create_app
from .appkeys import SERVICES
from .audit.log import AuditEntry, Outcome
from .audit.verify import verify_command
from .auth.oidc import is_hpr_number
from .auth.passwords import hash_password
from .auth.totp import TotpBox
from .config import Settings
from .db.models import StaffRole
from .demo import DEMO_LOGINS, DEMO_REGION, demo_consultation
from .errors import WoundcareError
from .inflight import IN_FLIGHT
from .records.audit_trail import AuditTrail
from .records.events import EventType, new_event_id
from .records.patients_index import PatientIndexer
from .records.rekey import Reencryption
from .records.webhooks import BadWebhookUrl, EndpointView, event_body
from .refs import guest_ref, user_ref
from .services import Services, build_services
from .webhooks.sender import send


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
    services = app[SERVICES]
    settings = services.settings
    lines = [f"woundcare listening on {settings.base_url}"]
    consultation = await demo_consultation(services) if settings.demo else None
    if consultation is not None:
        lines.append(f"demo region '{DEMO_REGION}', demo consultation {consultation}")
        lines.append("demo logins (demo only; change or disable with --no-demo):")
        lines.extend(f"  {login.role.value:<11} {login.username} / {login.password}" for login in DEMO_LOGINS)
        invite = _command("invite", consultation, "--role", "nurse", "--data-dir", str(settings.data_dir.resolve()))
        lines.append(f"invitation token: {invite}")
    print("\n".join(lines), flush=True)


def _command(*args: str) -> str:
    """A ``woundcare`` command line that works as typed, from any folder: this interpreter by
    its absolute path (the console script is on PATH only in an activated venv)."""
    return shlex.join([sys.executable, "-m", "woundcare", *args])


SHUTDOWN_SECONDS = 60.0
"""How long SIGTERM waits for requests in flight (uploads) before closing them."""


async def _run_server(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully: stop listening (readiness
    turns 503), let requests in flight such as uploads finish, then close: sockets are told
    to resume elsewhere, resources are released.

    Not ``web.run_app``: its shutdown cancels handlers still reading a request body, which
    would cut uploads in flight short."""
    app = create_app(settings)
    app.on_startup.append(_banner)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        _spare_the_collector()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        app[DRAINING].set()
        await site.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(app[IN_FLIGHT].idle(), SHUTDOWN_SECONDS)
    finally:
        await runner.cleanup()


YOUNG_COLLECTION_EVERY = 5_000
"""Container allocations (net of frees) between two collections of the youngest generation;
Python's default is 700. A join allocates a few hundred (the request, the socket, admission,
the room's frames) and keeps some thirty for the socket's life; at 700 most joins paid a
collection, which walked the objects of the joins still in flight and promoted them, to be
walked again in the next generation once they had died. The price is memory: a cycle that
became garbage waits longer for its collection (about 0.4 KB a client more after 1,000 joins
in alternated pairs of ``bench.signaling_load``, for a tenth less CPU a join)."""
MIDDLE_COLLECTION_EVERY = 2
"""Young collections between two collections of the middle generation (Python's default: 10),
so that one comes every 10,000 allocations, about as often as the default's 7,000: a cycle
that survived a young collection and became garbage since is freed about as soon as before,
not kept by a server that has gone quiet (at 10, ``bench.signaling_load`` found about 0.3 KB
a client more after 1,000 joins)."""


def _spare_the_collector() -> None:
    """Keep the cyclic garbage collector's pauses off the relay's latency: what start-up
    made (modules, the schema, the app) lives as long as the process, yet every full
    collection would walk it again, a pause of tens of milliseconds that every frame in
    flight waits for (p99 at 2,000 frames/s went from about 30 ms to about 6 ms). Frozen,
    it is never walked. Young collections come every :data:`YOUNG_COLLECTION_EVERY`
    allocations instead of 700."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, MIDDLE_COLLECTION_EVERY, gc.get_threshold()[2])


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    logs.configure(settings.log_level, json_lines=settings.log_format == "json")
    try:
        import uvloop
    except ImportError:
        asyncio.run(_run_server(settings))
    else:
        uvloop.run(_run_server(settings))
    return 0


class CliError(WoundcareError):
    """A mistake in the command (unknown name, duplicate, ...): one line on stderr, exit code 2."""


NEW_PASSWORD_ENV = "WOUNDCARE_NEW_PASSWORD"
"""Where ``user add`` and ``user reset-password`` take the password from; else one is generated."""


def _services(args: argparse.Namespace, **overrides: object) -> Services:
    """The services for a command's settings, ``overrides`` applied: no web app around them."""
    return build_services(_settings(args).model_copy(update=overrides))


async def _invite(services: Services, consultation: str, role: Role, name: str | None) -> str:
    async with services:
        view = await services.consultations.get(consultation)
    if view is None:
        raise CliError(f"no such consultation: {consultation}")
    return services.invitations.issue(
        consultation, role, guest_ref(), name or role.value.capitalize(), view.region
    )


def _invite_cmd(args: argparse.Namespace) -> int:
    print(asyncio.run(_invite(_services(args), args.consultation, Role(args.role), args.name)))
    return 0


# Administration. Each command opens the services, acts, writes one audit entry per action
# (actor "cli"; ids only, never passwords or tokens) and returns the process exit code.

AdminCommand = Callable[[Services, argparse.Namespace], Awaitable[int]]


def _admin(command: AdminCommand) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        async def opened() -> int:
            async with _services(args) as services:
                return await command(services, args)

        return asyncio.run(opened())

    return run


async def _audit(services: Services, action: str, resource: str, region_id: int | None = None) -> None:
    # Chained like every entry; a checkpoint is signed as often as the server would.
    await services.audit.record(
        AuditEntry(f"admin.{action}", Outcome.OK, actor="cli", region_id=region_id, resource=resource)
    )


def _new_password() -> tuple[str, bool]:
    """The password to set, and whether it was generated (and so must be shown once)."""
    given = os.environ.get(NEW_PASSWORD_ENV)
    if given:
        return given, False
    return secrets.token_urlsafe(12), True


async def _region_id(services: Services, code: str) -> int:
    # A shredded region too: it can still be shredded again, rotated or have its retention set.
    region_id = await services.accounts.region_id(code, shredded=True)
    if region_id is None:
        raise CliError(f"no such region: {code}")
    return region_id


async def _user_id(services: Services, username: str) -> int:
    user_id = await services.accounts.user_id(username)
    if user_id is None:
        raise CliError(f"no such user: {username}")
    return user_id


async def _region_add(services: Services, args: argparse.Namespace) -> int:
    region_id = await services.accounts.add_region(args.code, args.name)
    if region_id is None:
        raise CliError(f"region already exists: {args.code}")
    await _audit(services, "region.add", f"region:{args.code}", region_id)
    print(f"region {args.code} added (id {region_id})")
    return 0


async def _region_retention(services: Services, args: argparse.Namespace) -> int:
    region_id = await _region_id(services, args.code)
    days = None if args.days == 0 else args.days
    await services.accounts.set_retention(region_id, days)
    await _audit(services, "region.retention", f"region:{args.code}:{days or 'keep'}", region_id)
    print(f"region {args.code}: " + (f"consultations ended over {days} days ago are due" if days else "kept"))
    return 0


async def _user_add(services: Services, args: argparse.Namespace) -> int:
    region_ids = [await _region_id(services, code) for code in dict.fromkeys(args.region)]
    password, generated = _new_password()
    role = StaffRole(args.role)
    user_id = await services.accounts.add_user(args.username, args.name, hash_password(password), role, region_ids)
    if user_id is None:
        raise CliError(f"user already exists: {args.username}")
    for region_id in region_ids:
        await _audit(services, "user.add", f"user:{user_ref(user_id)}", region_id)
    print(f"user {args.username} added (id {user_id}, {role.value} in {', '.join(args.region)})")
    if generated:
        print(f"password (shown once): {password}")
    return 0


async def _user_disable(services: Services, args: argparse.Namespace) -> int:
    user_id = await _user_id(services, args.username)
    await services.accounts.disable_user(user_id)
    await _audit(services, "user.disable", f"user:{user_ref(user_id)}")
    print(f"user {args.username} disabled; sessions revoked")
    return 0


async def _user_reset_password(services: Services, args: argparse.Namespace) -> int:
    user_id = await _user_id(services, args.username)
    password, generated = _new_password()
    await services.accounts.set_password(user_id, hash_password(password))
    await _audit(services, "user.reset_password", f"user:{user_ref(user_id)}")
    print(f"password of {args.username} reset; sessions revoked")
    if generated:
        print(f"password (shown once): {password}")
    return 0


async def _user_totp(services: Services, args: argparse.Namespace) -> int:
    """Enrol (or re-enrol) a TOTP second factor; the secret is shown once, for the user's app."""
    user_id = await _user_id(services, args.username)
    secret, sealed = TotpBox(services.settings.signing_key()).new_secret(user_id)
    await services.accounts.set_totp(user_id, sealed)
    await _audit(services, "user.totp", f"user:{user_ref(user_id)}")
    print(f"TOTP enrolled for {args.username}; sessions revoked")
    print(f"secret (shown once): {secret}")
    print(f"authenticator URI: {TotpBox.uri(secret, args.username)}")
    return 0


async def _user_hpr(services: Services, args: argparse.Namespace) -> int:
    """Link an account to a health professional's HPR number, for ``oidc_link_by = "hpr_number"``
    (a login also stores the number the provider sends)."""
    if not is_hpr_number(args.hpr_number):
        raise CliError("an HPR number is one to nine digits")
    user_id = await _user_id(services, args.username)
    if not await services.accounts.set_hpr_number(user_id, args.hpr_number):
        raise CliError("this HPR number belongs to another user")
    await _audit(services, "user.hpr", f"user:{user_ref(user_id)}")
    print(f"HPR number of {args.username} set")
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with _services(args) as services:
            return await verify_command(AuditTrail(services.database), services.settings)

    return asyncio.run(run())


def _db_upgrade(args: argparse.Namespace) -> int:
    """The deploy step: bring the schema to the newest migration, whatever auto_migrate says."""

    async def run() -> None:
        async with _services(args, auto_migrate=True):
            pass

    asyncio.run(run())
    print("database schema is up to date")
    return 0


async def _device_issue(services: Services, args: argparse.Namespace) -> int:
    user_id = await _user_id(services, args.user)
    region_id = await _region_id(services, args.region)
    if await services.accounts.active_nurse(args.user, region_id) is None:
        # The rule is active_nurse's; this only tells the admin which half of it failed.
        user = await services.accounts.user(user_id)
        if user is not None and not user.active:
            raise CliError(f"user is disabled: {args.user}")
        raise CliError(f"{args.user} is not a nurse of region {args.region}")
    device_id, token = await services.devices.issue(user_id, region_id, args.name)
    await _audit(services, "device.issue", f"device:{device_id}", region_id)
    print(f"device {device_id} issued to {args.user} in {args.region}")
    print(f"token (shown once): {token}")
    return 0


def _keys_admin(command: AdminCommand) -> Callable[[argparse.Namespace], int]:
    """Run a command that re-seals records: first, the blobs a killed earlier run left.

    The instance is named ``keys-cli``, so blobs left by a killed earlier run are this
    instance's own and are cleaned up first; run one such command at a time.
    """

    def run(args: argparse.Namespace) -> int:
        async def opened() -> int:
            async with _services(args, instance="keys-cli", demo=False) as services:
                await services.snapshots.recover()
                return await command(services, args)

        return asyncio.run(opened())

    return run


def _progress(label: str) -> Callable[[int, int], None]:
    """Progress on stderr: a bar redrawn in place on a terminal; elsewhere (a pipe, a
    deploy log) one plain line per step, which carriage returns would garble."""
    on_terminal = sys.stderr.isatty()

    def show(done: int, total: int) -> None:
        if not on_terminal:
            print(f"{label}: {done}/{total}", file=sys.stderr, flush=True)
            return
        filled = 30 * done // max(total, 1)
        end = "\n" if done >= total else ""
        print(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}", end=end, file=sys.stderr, flush=True)

    return show


async def _keys_rotate(services: Services, args: argparse.Namespace) -> int:
    region_id = await _region_id(services, args.region)
    if not args.resume:
        key_id = await services.keyring.rotate(region_id)
        await _audit(services, "keys.rotate", f"key:{key_id}", region_id)
        print(f"region {args.region}: new data key {key_id}")
    rekey = Reencryption(services.database, services.keyring, services.snapshots)
    moved = await rekey.run(region_id, _progress("re-encrypting"))
    await _audit(services, "keys.reencrypt", f"records:{moved}", region_id)
    print(f"region {args.region}: {moved} records re-encrypted; {await rekey.pending(region_id)} left")
    return 0


async def _patients_index(services: Services, args: argparse.Namespace) -> int:
    """Index the national ids of patients registered before the blind index; resumable."""
    if args.batch_size < 1:
        raise CliError("--batch-size must be at least 1")
    indexer = PatientIndexer(services.database, services.keyring, services.patients)
    run = await indexer.run(args.batch_size, _progress("indexing patients"), pause=args.pause)
    await _audit(services, "patients.index", f"patients:{run.indexed}")
    print(f"{run.indexed} patients indexed")
    for duplicate in run.duplicates:
        # Pseudonyms only: which rows to merge, never whose they are.
        print(f"patient {duplicate.pseudonym} has the national id of patient {duplicate.of}: left unindexed, merge by hand")
    for pseudonym in run.unreadable:
        print(f"patient {pseudonym} has no valid national id stored: left unindexed")
    return 0


async def _keys_rewrap(services: Services, args: argparse.Namespace) -> int:
    count = await services.keyring.rewrap_all()
    await _audit(services, "keys.rewrap", f"keys:{count}")
    print(f"{count} region keys re-wrapped under the current master key")
    return 0


async def _region_shred(services: Services, args: argparse.Namespace) -> int:
    """Destroy a region's keys: every record sealed with them becomes unreadable, for good."""
    region_id = await _region_id(services, args.code)
    confirm = args.confirm
    if confirm is None and sys.stdin.isatty():
        confirm = input(f"This destroys every record of region {args.code} for good. Type the code to confirm: ")
    if confirm != args.code:
        raise CliError("not confirmed: pass --confirm with the region code")
    await services.keyring.shred(region_id)
    await _audit(services, "region.shred", f"region:{args.code}", region_id)
    print(f"region {args.code} shredded: its records can no longer be decrypted")
    return 0


async def _pilot_areas(services: Services, args: argparse.Namespace) -> int:
    """Fill the plain wound areas the effect figures read, for snapshots measured before 0007."""
    filled = await services.snapshots.fill_areas()
    await _audit(services, "pilot.areas", f"snapshots:{filled}")
    print(f"{filled} measured snapshots now carry their area for the effect figures")
    return 0


async def _device_revoke(services: Services, args: argparse.Namespace) -> int:
    region_id = await services.accounts.device_region(args.id)
    if region_id is None:
        raise CliError(f"no such device: {args.id}")
    if not await services.devices.revoke(args.id):
        raise CliError(f"device already revoked: {args.id}")
    await _audit(services, "device.revoke", f"device:{args.id}", region_id)
    print(f"device {args.id} revoked")
    return 0


async def _webhooks_add(services: Services, args: argparse.Namespace) -> int:
    region_id = await _region_id(services, args.region) if args.region else None
    try:
        endpoint, secret = await services.webhooks.add(args.url, [EventType(e) for e in args.events or ()], region_id)
    except BadWebhookUrl as exc:
        raise CliError(exc.message or exc.code) from None
    await _audit(services, "webhook.add", f"webhook:{endpoint.id}", region_id)
    print(f"webhook endpoint {endpoint.id} added: {_endpoint_line(endpoint)}")
    print(f"secret (shown once): {secret}")
    return 0


def _endpoint_line(endpoint: EndpointView) -> str:
    events = " ".join(endpoint.event_types) or "all events"
    return f"{endpoint.url} ({events}; {f'region {endpoint.region}' if endpoint.region else 'all regions'})"


async def _webhooks_list(services: Services, args: argparse.Namespace) -> int:
    for endpoint in await services.webhooks.endpoints():
        print(f"{endpoint.id}  {_endpoint_line(endpoint)}{'' if endpoint.enabled else '  disabled'}")
    return 0


async def _webhooks_test(services: Services, args: argparse.Namespace) -> int:
    """Send a signed ``webhook.test`` event to one endpoint now, outside the outbox: the
    admin sees at once whether the receiver takes it and checks the signature."""
    found = await services.webhooks.endpoint(args.id)
    if found is None:
        raise CliError(f"no such webhook endpoint: {args.id}")
    endpoint, secret = found
    body = event_body(EventType.WEBHOOK_TEST, datetime.now(UTC), {})
    async with aiohttp.ClientSession() as http:
        result = await send(http, endpoint.url, secret, new_event_id(), body, services.settings.webhook_timeout_seconds)
    await _audit(services, "webhook.test", f"webhook:{endpoint.id}")
    if result.error is None:
        print(f"webhook endpoint {endpoint.id} answered {result.status}: delivered")
        return 0
    print(f"webhook endpoint {endpoint.id} did not take the test event: {result.error}")
    return 1


async def _webhooks_remove(services: Services, args: argparse.Namespace) -> int:
    if not await services.webhooks.remove(args.id):
        raise CliError(f"no such webhook endpoint: {args.id}")
    await _audit(services, "webhook.remove", f"webhook:{args.id}")
    print(f"webhook endpoint {args.id} removed, with its deliveries")
    return 0


def _send_econsult(args: argparse.Namespace, token: str) -> int:
    """Photos and a question for a specialist to answer later, instead of a call."""
    from .camera.econsult import EconsultOptions, send_econsult

    if args.patient is None or args.question is None or not args.photo:
        raise CliError("--econsult needs --patient, --question and at least one --photo")
    try:
        options = EconsultOptions(
            server=args.server, token=token, patient=args.patient, question=args.question, urgency=args.urgency,
            photos=tuple(args.photo), queue_dir=args.queue_dir,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    logs.configure(args.log_level, json_lines=False)
    sent = asyncio.run(send_econsult(options))
    print(f"e-consult {sent.id} sent with {sent.photos} of {len(options.photos)} photo(s)")
    return 0 if sent.photos == len(options.photos) else 1


def _camera(args: argparse.Namespace) -> int:
    """The head camera: publish video to the consultation and answer snapshot requests."""
    from signaling.protocol import VideoMode

    from .camera.device import TOKEN_ENV, DeviceOptions, loopback_only, run_camera
    from .camera.turn import TurnTransport

    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        raise CliError(f"no device token: pass --token or set ${TOKEN_ENV}")
    if args.econsult:
        return _send_econsult(args, token)
    consent = frozenset(k for k in (args.consent or "").split(",") if k)
    try:
        options = DeviceOptions(
            server=args.server, token=token, consultation=args.consultation, patient=args.patient,
            source=args.source, width=args.width, height=args.height, consent=consent, queue_dir=args.queue_dir,
            video_mode=VideoMode(args.video), turn_transport=TurnTransport(args.turn_transport),
            speaker=args.speaker, microphone=args.microphone,
            overlay=args.overlay, overlay_events=args.overlay_events,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    logs.configure(args.log_level, json_lines=False)
    if args.loopback_only:
        loopback_only()
    return asyncio.run(run_camera(options))


class _Parser(argparse.ArgumentParser):
    """An argument that starts with ``-`` is an option only if it names one (or abbreviates a
    long one): consultation ids are URL-safe base64 and 1 in 64 starts with ``-``, so
    ``woundcare invite -x3Gk... --role nurse`` must take it as the id, as users type it."""

    def _parse_optional(self, arg_string: str) -> Any:
        name = arg_string.split("=", 1)[0]
        if len(name) > 1 and name.startswith("-") and not any(
            option.startswith(name) for option in self._option_string_actions
        ):
            return None
        return super()._parse_optional(arg_string)


def build_parser() -> argparse.ArgumentParser:
    # Subcommands' parsers take the class of the parser they hang from.
    parser = _Parser(prog="woundcare", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    common = _Parser(add_help=False)
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

    region = sub.add_parser("region", help="manage regions").add_subparsers(dest="action", required=True)
    region_add = region.add_parser("add", parents=[common], help="add a region")
    region_add.add_argument("code", help="short unique code, e.g. 'nord'")
    region_add.add_argument("name", help="display name")
    region_add.set_defaults(func=_admin(_region_add))
    region_retention = region.add_parser(
        "retention", parents=[common], help="set how long ended consultations are kept (0: keep)"
    )
    region_retention.add_argument("code")
    region_retention.add_argument("days", type=int)
    region_retention.set_defaults(func=_admin(_region_retention))
    region_shred = region.add_parser(
        "shred", parents=[common], help="destroy a region's keys (crypto-shredding; cannot be undone)"
    )
    region_shred.add_argument("code")
    region_shred.add_argument("--confirm", metavar="CODE", help="the region code again, to confirm")
    region_shred.set_defaults(func=_keys_admin(_region_shred))

    keys = sub.add_parser("keys", help="encryption keys").add_subparsers(dest="action", required=True)
    keys_rotate = keys.add_parser(
        "rotate", parents=[common], help="new data key for a region, then re-encrypt its records (resumable)"
    )
    keys_rotate.add_argument("--region", required=True, metavar="CODE")
    keys_rotate.add_argument("--resume", action="store_true", help="finish an interrupted pass; no new key")
    keys_rotate.set_defaults(func=_keys_admin(_keys_rotate))
    keys_rewrap = keys.add_parser(
        "rewrap", parents=[common], help="wrap all region keys under the current master key (master key rotation)"
    )
    keys_rewrap.set_defaults(func=_keys_admin(_keys_rewrap))

    patients = sub.add_parser("patients", help="patient records").add_subparsers(dest="action", required=True)
    patients_index = patients.add_parser(
        "index", parents=[common],
        help="index the national ids of patients registered before the blind index (resumable)",
    )
    patients_index.add_argument("--batch-size", type=int, default=200, help="rows per transaction (default 200)")
    # An operator's brake on a busy database; the tests' way to stop a run half way.
    patients_index.add_argument("--pause", type=float, default=0.0, metavar="SECONDS",
                                help="wait this long after each batch (default 0)")
    patients_index.set_defaults(func=_admin(_patients_index))

    new_password = f"password from ${NEW_PASSWORD_ENV}, else generated and printed once"
    pilot = sub.add_parser("pilot", help="the pilot's figures").add_subparsers(dest="action", required=True)
    pilot_areas = pilot.add_parser(
        "areas", parents=[common], help="fill the wound areas of snapshots measured before migration 0007 (resumable)"
    )
    pilot_areas.set_defaults(func=_admin(_pilot_areas))

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    user_add = user.add_parser("add", parents=[common], help=f"add a user ({new_password})")
    user_add.add_argument("username")
    user_add.add_argument("--name", required=True, help="display name")
    user_add.add_argument("--role", choices=[r.value for r in StaffRole], required=True)
    user_add.add_argument(
        "--region", action="append", required=True, metavar="CODE", help="repeat for several"
    )
    user_add.set_defaults(func=_admin(_user_add))
    user_disable = user.add_parser("disable", parents=[common], help="disable a user and end their sessions")
    user_disable.add_argument("username")
    user_disable.set_defaults(func=_admin(_user_disable))
    user_reset = user.add_parser(
        "reset-password", parents=[common], help=f"set a new password, unlock, end sessions ({new_password})"
    )
    user_reset.add_argument("username")
    user_reset.set_defaults(func=_admin(_user_reset_password))
    user_totp = user.add_parser(
        "totp", parents=[common], help="enrol a TOTP second factor (for specialists and pilot leads)"
    )
    user_totp.add_argument("username")
    user_totp.set_defaults(func=_admin(_user_totp))
    user_hpr = user.add_parser(
        "hpr", parents=[common], help="set the user's HPR number (single sign-on may link by it)"
    )
    user_hpr.add_argument("username")
    user_hpr.add_argument("hpr_number")
    user_hpr.set_defaults(func=_admin(_user_hpr))

    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(dest="action", required=True)
    audit_verify = audit.add_parser(
        "verify", parents=[common], help="check the audit hash chain and checkpoints; exit 1 at the first break"
    )
    audit_verify.set_defaults(func=_audit_verify)

    camera = sub.add_parser("camera", help="run a head camera: publish video, answer snapshot requests")
    camera.add_argument("--server", required=True, help="base URL, e.g. https://woundcare.example")
    camera.add_argument("--token", help="device token wcd_... (default $WOUNDCARE_DEVICE_TOKEN)")
    target = camera.add_mutually_exclusive_group(required=True)
    target.add_argument("--consultation", metavar="ID", help="join this consultation")
    target.add_argument("--patient", metavar="PSEUDONYM", help="start a consultation for this patient (write --patient=P: a pseudonym may start with -)")
    camera.add_argument("--source", default="synthetic", help="synthetic, a media file, or /dev/videoN")
    camera.add_argument("--width", type=int, default=1920)
    camera.add_argument("--height", type=int, default=1080)
    camera.add_argument("--consent", metavar="KINDS", help="record the patient's consent first, e.g. video,snapshots")
    camera.add_argument("--queue-dir", type=Path, default=Path("var/camera-queue"), help="stills awaiting upload")
    camera.add_argument("--video", choices=["auto", "standard", "low"], default="auto",
                        help="video profile: auto adapts to loss and round-trip time (default)")
    camera.add_argument("--turn-transport", choices=["auto", "udp", "tcp", "tls"], default="auto",
                        help="how to reach TURN: auto tries UDP, then TCP/TLS (default)")
    camera.add_argument("--speaker", metavar="DEVICE",
                        help="play the specialist's voice: alsa:NAME, pulse:NAME or a .wav file")
    camera.add_argument("--microphone", metavar="DEVICE", help="send the nurse's voice: alsa:NAME or pulse:NAME")
    camera.add_argument("--overlay", type=Path, metavar="PATH",
                        help="keep PATH a PNG of the frame's size, transparent but for the specialist's strokes "
                             "(the frozen still under them while frozen), replaced atomically at each change")
    camera.add_argument("--overlay-events", action="store_true",
                        help="print each applied annotation/freeze, and each start and end of a recording, as one "
                             "JSON line on stdout (logs go to stderr)")
    camera.add_argument("--econsult", action="store_true",
                        help="no call: send --photo files and a --question for a specialist to answer later")
    camera.add_argument("--question", help="with --econsult: the question to the specialist")
    camera.add_argument("--urgency", choices=["routine", "soon", "urgent"], default="routine",
                        help="with --econsult (default routine)")
    camera.add_argument("--photo", type=Path, action="append", help="with --econsult: a photo (JPEG, PNG, WebP); repeat")
    camera.add_argument("--log-level", default="INFO")
    # Test only: gather a 127.0.0.1 host candidate so peers on one machine meet.
    camera.add_argument("--loopback-only", action="store_true", help=argparse.SUPPRESS)
    camera.set_defaults(func=_camera)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    db_upgrade = db.add_parser("upgrade", parents=[common], help="apply schema migrations (a deploy step)")
    db_upgrade.set_defaults(func=_db_upgrade)

    device = sub.add_parser("device", help="manage head-camera devices").add_subparsers(
        dest="action", required=True
    )
    device_issue = device.add_parser("issue", parents=[common], help="issue a device token (printed once)")
    device_issue.add_argument("--user", required=True, help="a nurse of the region")
    device_issue.add_argument("--region", required=True, metavar="CODE")
    device_issue.add_argument("--name", required=True, help="e.g. 'head camera 3'")
    device_issue.set_defaults(func=_admin(_device_issue))
    device_revoke = device.add_parser("revoke", parents=[common], help="revoke a device token")
    device_revoke.add_argument("id", type=int)
    device_revoke.set_defaults(func=_admin(_device_revoke))

    webhooks = sub.add_parser("webhooks", help="webhook endpoints (docs/webhooks.md)").add_subparsers(
        dest="action", required=True
    )
    webhooks_add = webhooks.add_parser(
        "add", parents=[common], help="add an endpoint (its signing secret is printed once)"
    )
    webhooks_add.add_argument("url", help="http(s) URL the events are POSTed to")
    webhooks_add.add_argument(
        "--events", nargs="+", metavar="TYPE", choices=[t.value for t in EventType if t is not EventType.WEBHOOK_TEST],
        help="only these event types (default: all)",
    )
    webhooks_add.add_argument("--region", metavar="CODE", help="only this region's events (default: all regions)")
    webhooks_add.set_defaults(func=_admin(_webhooks_add))
    webhooks_list = webhooks.add_parser("list", parents=[common], help="list the endpoints")
    webhooks_list.set_defaults(func=_admin(_webhooks_list))
    webhooks_test = webhooks.add_parser(
        "test", parents=[common], help="send a signed webhook.test event to an endpoint and show its answer"
    )
    webhooks_test.add_argument("id", type=int)
    webhooks_test.set_defaults(func=_admin(_webhooks_test))
    webhooks_remove = webhooks.add_parser("remove", parents=[common], help="remove an endpoint")
    webhooks_remove.add_argument("id", type=int)
    webhooks_remove.set_defaults(func=_admin(_webhooks_remove))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"woundcare: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
