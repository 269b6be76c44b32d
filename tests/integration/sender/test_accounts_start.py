"""What the sender does with accounts at each start (`adapters.accounts.prepare`), on PostgreSQL: the bootstrap
account is added once, registered when SCRM_BOOTSTRAP_REGISTERED_AT says (else when first added) and never
re-dated by a later start; plain tokens are encrypted; nothing it logs holds a token."""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.db import make_engine, migrate
from sender.adapters.accounts import AccountRepository, prepare
from sender.adapters.db import SendLog
from sender.adapters.secrets import TokenCipher
from sender.config import Settings
from sender.main import MIGRATIONS, SCHEMA, bootstrap_account

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def database_url(postgres) -> str:  # type: ignore[no-untyped-def]
    return postgres.new_database()


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, schema=SCHEMA, pool_size=2)
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    yield engine
    await engine.dispose()


def _number() -> str:
    return f"1{random.randint(10**14, 10**15 - 1)}"


@pytest.mark.parametrize(("registered_setting", "registered"), [
    ("", NOW),  # when first added
    ("2026-10-01", datetime(2026, 10, 1, tzinfo=UTC)),
])
async def test_the_bootstrap_account_is_added_once_and_never_redated(
        engine: AsyncEngine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
        registered_setting: str, registered: datetime) -> None:
    caplog.set_level(logging.DEBUG)
    tenant, number, token = f"s{uuid.uuid4().hex[:10]}", _number(), f"boot-{uuid.uuid4().hex}"
    monkeypatch.setenv("SCRM_BOOTSTRAP_REGISTERED_AT", registered_setting)
    settings = Settings(bootstrap_tenant=tenant, bootstrap_phone_number_id=number, bootstrap_waba_id=_number(),
                        bootstrap_access_token=token)  # type: ignore[arg-type]
    cipher = TokenCipher([Fernet.generate_key()])
    repo = AccountRepository(cipher)
    for day in range(3):  # three starts on three days
        now = NOW + timedelta(days=day)
        await prepare(engine, repo, tenant=tenant, bootstrap=bootstrap_account(settings, now), now=now)
    async with engine.connect() as conn:
        [account] = await SendLog(cipher).accounts(conn, tenant, NOW)
        stored = (await conn.execute(text("SELECT access_token FROM accounts WHERE account_id = :a"),
                                     {"a": number})).scalar_one()
        events = (await conn.execute(text("SELECT count(*) FROM outbox WHERE key = :k"),
                                     {"k": f"{tenant}:account:{number}".encode()})).scalar_one()
    assert account["registered_at"] == registered and account["created_at"] == NOW
    assert (account["throughput_per_second"], account["new_account_per_day"], account["new_account_days"]) == (
        80, 50, 3)
    assert cipher.decrypt(stored) == token and token not in stored
    assert events == 1  # announced when added; later starts changed nothing
    assert f"bootstrap account {number} of tenant {tenant}: created" in caplog.text
    assert caplog.text.count("unchanged") >= 2
    assert token not in caplog.text


def test_no_bootstrap_account_without_a_phone_number_id() -> None:
    assert bootstrap_account(Settings(bootstrap_phone_number_id=""), NOW) is None
