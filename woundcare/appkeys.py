"""Typed application state shared by the app factory and the API modules."""

from __future__ import annotations

from aiohttp import web

from .auth.invitations import Invitations
from .config import Settings
from .db.database import Database
from .records.session_log import SessionLog

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
INVITATIONS = web.AppKey("invitations", Invitations)
SESSION_LOG = web.AppKey("session_log", SessionLog)
