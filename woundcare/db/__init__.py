"""Database models and the async engine."""
