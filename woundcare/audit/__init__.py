"""The audit trail: every security-relevant event, append-only."""
