"""The services a woundcare process works with, built once from its settings.

The web app (:func:`woundcare.app.create_app`) and the command line (:mod:`woundcare.cli`)
both start from :func:`build_services`, so rotating keys or adding a region needs no web app:
the app adds only what aiohttp needs (routes, signaling, middlewares, the queue over the
rooms) and hands its handlers this one object through ``SERVICES``.

Building does no I/O on the database; ``async with services:`` opens it (migrating if the
settings say so) and closes everything at the end, in the order the services depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType

from .audit.chain import CheckpointSigner
from .audit.log import AuditLog
from .auth.devices import Devices
from .auth.failures import MemoryLedger, RedisLedger
from .auth.invitations import Invitations
from .auth.login import Login, LoginPolicy
from .auth.sessions import Sessions
from .auth.totp import TotpBox
from .config import Settings
from .crypto import Keyring, MasterKey
from .db.database import Database
from .db.engine import sqlite_file
from .recording.remux import Remuxer
from .recording.uploads import RecordingUploads
from .records.access_log import AccessLog
from .records.accounts import Accounts
from .records.assessments import Assessments
from .records.audit_trail import AuditTrail
from .records.consents import Consents
from .records.consultations import Consultations
from .records.events import Events
from .records.guests import Guests
from .records.imagework import ImageWork
from .records.patients import Patients
from .records.pilot import Pilot
from .records.quality import Quality
from .records.recordings import Recordings
from .records.region_keys import RegionKeys
from .records.retention import Retention
from .records.session_log import SessionLog
from .records.snapshots import Snapshots
from .records.webhooks import Webhooks
from .storage.blobs import BlobStore
from .storage.intents import Intents
from .storage.private import private_dir, private_file


@dataclass(slots=True)
class Services:
    """Everything a request or a command acts through; one per process."""

    settings: Settings
    database: Database
    keyring: Keyring
    audit: AuditLog
    invitations: Invitations
    accounts: Accounts
    sessions: Sessions
    devices: Devices
    guests: Guests
    """One-time guest links into a call (interpreters, relatives, GPs)."""
    login: Login
    session_log: SessionLog
    patients: Patients
    consultations: Consultations
    consents: Consents
    access_log: AccessLog
    quality: Quality
    assessments: Assessments
    image_work: ImageWork
    """The image threads: a pool apart from password hashing, with a budget of pixels."""
    snapshots: Snapshots
    recordings: Recordings
    recording_uploads: RecordingUploads
    retention: Retention
    pilot: Pilot
    events: Events
    """The outbox writer the state changes emit through (``consultation.started``, …)."""
    webhooks: Webhooks
    """The endpoints and their deliveries, for the deliverer and ``woundcare webhooks``."""

    async def __aenter__(self) -> Services:
        await self.database.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release what the services hold: the login ledger's connection, the database, the
        image threads (after the database: a write in flight in one may still need it)."""
        try:
            await self.login.close()
            await self.database.stop()
        finally:
            self.image_work.close()


def master_keys(settings: Settings) -> list[MasterKey]:
    """The current master key first (made in the data folder on first start if none is
    configured), then the old ones that region keys may still be wrapped under."""
    if settings.master_key is not None:
        current = MasterKey.from_env_value(settings.master_key.get_secret_value())
    else:
        current = MasterKey.from_file(settings.master_key_file or settings.data_dir / "master.key", create=True)
    return [current, *(MasterKey.from_env_value(k.get_secret_value()) for k in settings.old_master_keys)]


def _private_data(settings: Settings) -> None:
    """The data folder 0700 and a SQLite database 0600 before SQLite opens it (its WAL and
    shared-memory files take the database file's mode), whatever the umask."""
    private_dir(settings.data_dir)
    path = sqlite_file(settings.db_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        private_file(path, "-wal", "-shm", "-journal")


def build_services(settings: Settings) -> Services:
    """The services for ``settings``, wired to each other; open them with ``async with``."""
    _private_data(settings)
    db = Database(settings.db_url, migrate=settings.auto_migrate)
    secret = settings.signing_key()
    invitations = Invitations(secret, settings.invitation_ttl_seconds)
    audit = AuditLog(AuditTrail(db), CheckpointSigner.from_secrets(secret))
    keyring = Keyring(RegionKeys(db.sessions), master_keys(settings))
    blobs = BlobStore(settings.blob_dir)
    recording_blobs = BlobStore(settings.recording_dir)
    image_work = ImageWork(settings.image_workers, settings.image_pixel_budget, settings.image_wait_seconds)
    events = Events()
    recordings = Recordings(db, keyring, recording_blobs, settings.instance_name, events, audit)
    return Services(
        settings=settings,
        database=db,
        keyring=keyring,
        audit=audit,
        invitations=invitations,
        accounts=Accounts(db),
        sessions=Sessions(
            db, timedelta(minutes=settings.session_idle_minutes), timedelta(hours=settings.session_max_hours)
        ),
        devices=Devices(db),
        guests=Guests(db),
        login=Login(
            db,
            audit,
            TotpBox(secret),
            LoginPolicy(
                throttle_after=settings.login_throttle_after,
                throttle_base_seconds=settings.login_throttle_base_seconds,
                lock_after=settings.login_lock_after,
                lock_minutes=settings.login_lock_minutes,
                address_limit=settings.address_failure_limit,
            ),
            RedisLedger.from_url(settings.redis_url, settings.redis_prefix) if settings.redis_url else MemoryLedger(),
        ),
        session_log=SessionLog(db, audit, events),
        patients=Patients(db, keyring),
        consultations=Consultations(db, keyring, events),
        consents=Consents(db),
        access_log=AccessLog(db),
        quality=Quality(db),
        assessments=Assessments(db, keyring, events),
        image_work=image_work,
        snapshots=Snapshots(
            db,
            keyring,
            blobs,
            Intents(settings.intent_dir, settings.instance_name),
            max_bytes=settings.snapshot_max_bytes,
            max_pixels=settings.snapshot_max_pixels,
            images=image_work,
            audit=audit,
        ),
        recordings=recordings,
        recording_uploads=RecordingUploads(recordings, Remuxer()),
        retention=Retention(db, blobs, recording_blobs),
        pilot=Pilot(db),
        events=events,
        webhooks=Webhooks(db, secret),
    )
