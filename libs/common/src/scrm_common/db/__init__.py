"""Database plumbing: the async SQLAlchemy engine bound to a service's own schema, and migrations."""

from scrm_common.db.engine import database_ready, make_engine
from scrm_common.db.migrations import migrate

__all__ = ["database_ready", "make_engine", "migrate"]
