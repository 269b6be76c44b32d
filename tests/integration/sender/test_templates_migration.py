"""Migration 006 on PostgreSQL: the per-tenant catalog of earlier releases moves to the WABAs of the tenant's
accounts with its statuses, and messages a paused template held are released (they fail or go at the next
dispatch: a paused template no longer holds, R-S2)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from scrm_common.db import make_engine, migrate
from sender.main import MIGRATIONS, SCHEMA

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
BEFORE = "005_accounts_owned_registered_encrypted.sql"


@pytest.fixture
def database_url(postgres) -> str:  # type: ignore[no-untyped-def]
    return postgres.new_database()


def _release(tmp_path: Path, last: str) -> Path:
    directory = tmp_path / last
    directory.mkdir()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if path.name <= last:
            shutil.copy(path, directory / path.name)
    return directory


async def test_the_tenant_catalog_moves_to_its_accounts_wabas_with_its_statuses(database_url: str,
                                                                                tmp_path: Path) -> None:
    engine = make_engine(database_url, schema=SCHEMA, pool_size=2)
    try:
        await migrate(engine, schema=SCHEMA, directory=_release(tmp_path, BEFORE))
        async with engine.begin() as conn:
            for tenant, account, waba in (("acme", "100", "waba-1"), ("acme", "101", "waba-2"),
                                          ("bolt", "200", None)):
                await conn.execute(text(
                    "INSERT INTO accounts(tenant, account_id, access_token, waba_id, created_at) "
                    "VALUES (:t, :a, 'tok', :w, :at)"), {"t": tenant, "a": account, "w": waba, "at": NOW})
            for tenant, name, status in (("acme", "welcome", "PAUSED"), ("acme", "order_confirmation", "APPROVED"),
                                         ("bolt", "welcome", "APPROVED")):
                await conn.execute(text(
                    "INSERT INTO templates(tenant, name, language, category, body, status) "
                    "VALUES (:t, :n, 'en_US', 'marketing', 'Hi {{1}}', :s)"), {"t": tenant, "n": name, "s": status})
            command = {"template": {"name": "welcome", "language": "en_US"}}
            await conn.execute(text(
                "INSERT INTO messages(tenant, idempotency_key, account_id, flow, category, contact_key, to_phone, "
                "command, state, next_attempt_at, queued_at, held_by, error_reason) VALUES ('acme', 'k1', '100', "
                "'welcome', 'marketing', 'c', '+4915112345678', CAST(:cmd AS jsonb), 'queued', :later, :now, "
                "'template:welcome/en_US', 'held: template welcome/en_US paused')"),
                {"cmd": json.dumps(command), "later": NOW + timedelta(hours=5), "now": NOW})

        await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)

        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT waba_id, name, status, components, template_id FROM templates ORDER BY waba_id, name"))).all()
            held = (await conn.execute(text(
                "SELECT state, held_by, next_attempt_at <= now() AS due FROM messages WHERE idempotency_key = 'k1'")
            )).one()
        # both of acme's WABAs get acme's catalog; bolt's account has no WABA, so its catalog has nowhere to go
        assert [(r.waba_id, r.name, r.status) for r in rows] == [
            ("waba-1", "order_confirmation", "APPROVED"), ("waba-1", "welcome", "PAUSED"),
            ("waba-2", "order_confirmation", "APPROVED"), ("waba-2", "welcome", "PAUSED")]
        assert all(r.components == [{"type": "BODY", "text": "Hi {{1}}"}] and r.template_id is None for r in rows)
        assert (held.state, held.held_by, held.due) == ("queued", None, True)
    finally:
        await engine.dispose()
