"""Webhooks out: signing and sending one attempt (``sender``), the outbox's deliverer (``deliverer``)."""
