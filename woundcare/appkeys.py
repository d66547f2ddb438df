"""Typed application state shared by the app factory and the API modules."""

from __future__ import annotations

from aiohttp import web

from .audit.log import AuditLog
from .auth.devices import Devices
from .auth.invitations import Invitations
from .auth.login import Login
from .auth.sessions import Sessions
from .config import Settings
from .recording.recorder import Recorders
from .crypto import Keyring
from .db.database import Database
from .records.access_log import AccessLog
from .records.accounts import Accounts
from .records.assessments import Assessments
from .records.consents import Consents
from .records.consultations import Consultations
from .records.patients import Patients
from .records.quality import Quality
from .records.queue import Queue
from .records.recordings import Recordings
from .records.retention import Retention
from .records.session_log import SessionLog
from .records.snapshots import Snapshots

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
INVITATIONS = web.AppKey("invitations", Invitations)
SESSION_LOG = web.AppKey("session_log", SessionLog)
AUDIT = web.AppKey("audit", AuditLog)
KEYRING = web.AppKey("keyring", Keyring)
ACCOUNTS = web.AppKey("accounts", Accounts)
SESSIONS = web.AppKey("sessions", Sessions)
DEVICES = web.AppKey("devices", Devices)
LOGIN = web.AppKey("login", Login)
PATIENTS = web.AppKey("patients", Patients)
CONSULTATIONS = web.AppKey("consultations", Consultations)
CONSENTS = web.AppKey("consents", Consents)
ASSESSMENTS = web.AppKey("assessments", Assessments)
SNAPSHOTS = web.AppKey("snapshots", Snapshots)
QUALITY = web.AppKey("quality", Quality)
ACCESS_LOG = web.AppKey("access_log", AccessLog)
RETENTION = web.AppKey("retention", Retention)
RECORDINGS = web.AppKey("recordings", Recordings)
RECORDERS = web.AppKey("recorders", Recorders)
QUEUE = web.AppKey("queue", Queue)
