"""Typed application state shared by the app factory and the API modules.

One key for the services (:mod:`woundcare.services`), which the command line builds too;
the others hold what exists only in a web app (the queue reads the signaling rooms)."""

from __future__ import annotations

from aiohttp import web

from .auth.bound_tokens import BoundTokens
from .records.queue import Queue
from .services import Services

SERVICES = web.AppKey("services", Services)
QUEUE = web.AppKey("queue", Queue)
BOUND_TOKENS = web.AppKey("bound_tokens", BoundTokens)
"""Present when the API accepts the provider's DPoP-bound access tokens (``oidc_api_audience``)."""


def services(request: web.Request) -> Services:
    """The services a handler acts through (from the app, also in a sub-app's request)."""
    return request.config_dict[SERVICES]
