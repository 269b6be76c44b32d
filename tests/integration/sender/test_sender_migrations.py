"""The sender's migrations upgrade a database written by earlier versions, one release at a time, on PostgreSQL:
rows already there keep working (queued messages are sent, invalid marks get their expiry, a scheduled 24 h
retry keeps the code it was taken for)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from scrm_common.db import make_engine, migrate
from sender.adapters.db import Account, SendLog
from sender.domain.pacing import PacingPolicy, PacingState
from sender.main import MIGRATIONS, SCHEMA

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
COMMAND = ('{"idempotency_key": "%s", "tenant": "t", "account_id": "100", "flow": "order_confirmation", '
           '"category": "utility", "contact_key": "c", "to": "+4915112345678", "text": "hi", "event_id": "e", '
           '"event_occurred_at": "2026-11-30T09:00:00Z", "decided_at": "2026-11-30T09:00:00Z"}')


@pytest.fixture
def database_url(postgres) -> str:  # type: ignore[no-untyped-def]
    return postgres.new_database()


def _release(tmp_path: Path, last: str) -> Path:
    """The migrations directory as a release that shipped up to `last` had it."""
    directory = tmp_path / last
    directory.mkdir()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if path.name <= last:
            shutil.copy(path, directory / path.name)
    return directory


def _message(key: str, **columns: object) -> dict[str, object]:
    return {"t": "t", "k": key, "cmd": COMMAND % key, "at": NOW - timedelta(hours=1), **columns}


async def test_each_migration_applies_on_the_schema_and_rows_of_the_release_before(database_url: str,
                                                                                    tmp_path: Path) -> None:
    engine = make_engine(database_url, schema=SCHEMA, pool_size=2)
    insert = text(
        "INSERT INTO messages(tenant, idempotency_key, account_id, flow, category, contact_key, to_phone, command, "
        "state, attempts, next_attempt_at, queued_at, error_code) VALUES (:t, :k, '100', 'order_confirmation', "
        "'utility', 'c', '+4915112345678', CAST(:cmd AS jsonb), 'queued', :attempts, :at, :at, :code)")
    try:
        # the first release: a queued message and an invalid mark without an expiry
        assert await migrate(engine, schema=SCHEMA, directory=_release(tmp_path, "001_init.sql")) == ["001_init.sql"]
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO accounts(tenant, account_id, access_token, created_at) VALUES ('t', '100', 'tok', :at)"),
                {"at": NOW - timedelta(days=60)})
            await conn.execute(insert, _message("old-queued", attempts=0, code=None))
            await conn.execute(text("INSERT INTO invalid_numbers(tenant, phone, error_code, marked_at) "
                                    "VALUES ('t', '+4915100000001', 131026, :at)"), {"at": NOW - timedelta(days=3)})
        # the next release: a message whose one 24 h retry was scheduled for a 131026
        second = _release(tmp_path, "002_meanings_identities_restrictions.sql")
        assert await migrate(engine, schema=SCHEMA, directory=second) == ["002_meanings_identities_restrictions.sql"]
        async with engine.begin() as conn:
            await conn.execute(insert, _message("late-131026", attempts=1, code=131026))
            await conn.execute(text("UPDATE messages SET late_retry_attempt = 1, next_attempt_at = :later "
                                    "WHERE idempotency_key = 'late-131026'"), {"later": NOW + timedelta(hours=23)})
        # today's migrations
        await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)

        log = SendLog()
        async with engine.begin() as conn:
            marks = await log.list_invalid_numbers(conn, "t", NOW)
            assert [(m["phone"], m["expires_at"]) for m in marks] == [
                ("+4915100000001", NOW - timedelta(days=3) + timedelta(days=30))]
            account = Account("t", "100", "tok", PacingPolicy(), PacingState(None, 100.0, NOW), NOW - timedelta(days=60))
            [claimed] = await log.claim(conn, account, NOW, utility=10, marketing=0)
            assert (claimed.idempotency_key, claimed.attempts, claimed.late_retry_attempt) == ("old-queued", 1, None)
            [late] = await log.claim(conn, account, NOW + timedelta(hours=24), utility=10, marketing=0)
            assert (late.idempotency_key, late.late_retry_attempt, late.late_retry_code) == ("late-131026", 1, 131026)
    finally:
        await engine.dispose()
