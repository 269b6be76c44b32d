"""Migration 005 on a database of the release before, on PostgreSQL: a number two tenants held (the old
bootstrap moved it) stays with the earliest, the other's queued messages fail with the reason; rows keep
working — registered at their created_at, plain tokens encrypted and announced at the next start."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from scrm_common.db import make_engine, migrate
from sender.adapters.accounts import AccountRepository
from sender.adapters.db import SendLog
from sender.adapters.secrets import TokenCipher
from sender.main import MIGRATIONS, SCHEMA

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
COMMAND = json.dumps({"idempotency_key": "k", "tenant": "late", "account_id": "100", "flow": "f", "category": "utility",
                      "contact_key": "c", "to": "+4915112345678", "text": "hi", "event_id": "e",
                      "event_occurred_at": "2026-11-30T09:00:00Z", "decided_at": "2026-11-30T09:00:00Z"})


def _release(tmp_path: Path, last: str) -> Path:
    directory = tmp_path / last
    directory.mkdir()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if path.name <= last:
            shutil.copy(path, directory / path.name)
    return directory


@pytest.fixture
def database_url(postgres) -> str:  # type: ignore[no-untyped-def]
    return postgres.new_database()


async def test_a_number_held_by_two_tenants_stays_with_the_earliest(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url, schema=SCHEMA, pool_size=2)
    try:
        await migrate(engine, schema=SCHEMA, directory=_release(tmp_path, "004_messages_by_contact.sql"))
        async with engine.begin() as conn:
            for tenant, number, age in (("early", "100", 40), ("late", "100", 30), ("late", "200", 30)):
                await conn.execute(text(
                    "INSERT INTO accounts(tenant, account_id, access_token, created_at, waba_id) "
                    "VALUES (:t, :a, :tok, :at, '900')"),
                    {"t": tenant, "a": number, "tok": f"plain-{tenant}-{number}", "at": NOW - timedelta(days=age)})
            await conn.execute(text(
                "INSERT INTO messages(tenant, idempotency_key, account_id, flow, category, contact_key, to_phone, "
                "command, state, next_attempt_at, queued_at) VALUES ('late', :k, '100', 'f', 'utility', 'c', "
                "'+4915112345678', CAST(:cmd AS jsonb), :state, :at, :at)"),
                [{"k": "queued-late", "cmd": COMMAND, "state": "queued", "at": NOW},
                 {"k": "sent-late", "cmd": COMMAND, "state": "sent", "at": NOW}])
            await conn.execute(text(
                "INSERT INTO account_restrictions(tenant, account_id, kind, scope, until, reason, updated_at) "
                "VALUES ('late', '100', 'DISABLED', 'all', NULL, 'x', :at)"), {"at": NOW})
        assert await migrate(engine, schema=SCHEMA, directory=MIGRATIONS) == [
            p.name for p in sorted(MIGRATIONS.glob("*.sql")) if p.name > "004_messages_by_contact.sql"]
        log = SendLog()
        async with engine.begin() as conn:
            owners = (await conn.execute(text(
                "SELECT tenant, account_id, registered_at, token_encrypted, announced_at FROM accounts "
                "ORDER BY account_id"))).all()
            assert [(r.tenant, r.account_id, r.registered_at, r.token_encrypted, r.announced_at) for r in owners] == [
                ("early", "100", NOW - timedelta(days=40), False, None),
                ("late", "200", NOW - timedelta(days=30), False, None)]
            queued, sent = await log.message(conn, "late", "queued-late"), await log.message(conn, "late", "sent-late")
            assert queued is not None and sent is not None
            assert (queued["state"], queued["error_reason"]) == (
                "failed", "account removed: the phone number id belongs to another tenant")
            assert sent["state"] == "sent"
            assert await log.restrictions(conn, "late", "100", NOW) == []
            # a second tenant can no longer hold the number
            account = await log.lock_account(conn, "early", "100")
            assert account is not None and account.access_token == "plain-early-100"
        # the next start: tokens encrypted, accounts announced
        cipher = TokenCipher([Fernet.generate_key()])
        repo = AccountRepository(cipher)
        async with engine.begin() as conn:
            secured = await repo.secure_tokens(conn, NOW)
            assert (secured.encrypted, secured.rotated, secured.unreadable) == (2, 0, [])
            assert await repo.announce(conn, NOW) == 2
            keys = sorted(bytes(k).decode() for k in (await conn.execute(text("SELECT key FROM outbox"))).scalars())
        assert keys == ["early:account:100", "late:account:200"]
        async with engine.begin() as conn:
            account = await SendLog(cipher).lock_account(conn, "early", "100")
            assert account is not None and account.access_token == "plain-early-100"
            assert account.registered_at == NOW - timedelta(days=40)
    finally:
        await engine.dispose()
