"""Access tokens no key decrypts, and keys changing under stored tokens (issue 7 review), on the real PostgreSQL:
the dispatcher never calls the provider with an empty bearer — it holds the account's messages under the
TOKEN_UNREADABLE restriction until PATCH sets a token or the key is back; going from the built-in development
key to a real SCRM_SECRETS_KEY loses no token; every start says how many rows are left not under the first key."""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import FixedClock
from scrm_common.contracts.commands import SendMessage, TemplateMessage
from scrm_common.db import make_engine, migrate
from scrm_common.kafka.consumer import Item
from sender.adapters.accounts import TOKEN_UNREADABLE, AccountRepository, NewAccount, prepare
from sender.adapters.cloud_api import Accepted
from sender.adapters.db import Catalog, SendLog, default_catalog
from sender.adapters.secrets import DEV_KEY, TokenCipher
from sender.adapters.templates import TemplateStore
from sender.domain.accounts import AccountPolicy
from sender.domain.outcomes import RetryPolicy
from sender.handlers import CommandHandler, Dispatcher, SenderMetrics
from sender.main import MIGRATIONS, SCHEMA

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
OLD, NEW = Fernet.generate_key(), Fernet.generate_key()


@pytest.fixture(scope="module")
def database_url(postgres) -> str:  # type: ignore[no-untyped-def]
    return postgres.new_database()


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, schema=SCHEMA, pool_size=4)
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    yield engine
    await engine.dispose()


@dataclass
class Api:
    bearers: list[str] = field(default_factory=list)

    async def send(self, *, phone_number_id: str, access_token: str, body: dict[str, Any]) -> Accepted:  # noqa: ARG002
        self.bearers.append(access_token)
        return Accepted(f"wamid.{uuid.uuid4().hex}", body["to"].lstrip("+"), body["to"], "accepted")


@dataclass
class Shop:
    tenant: str
    account: str
    engine: AsyncEngine
    clock: FixedClock
    api: Api

    async def queue(self, cipher: TokenCipher) -> str:
        key = f"{self.tenant}|order|{uuid.uuid4().hex[:8]}"
        command = SendMessage(
            idempotency_key=key, tenant=self.tenant, account_id=self.account, flow="order_confirmation",
            category="utility", contact_key="c1", to=f"+49151{random.randint(10_000_000, 99_999_999)}",
            template=TemplateMessage(name="welcome", language="en_US", parameters=["Ana", "10", "WELCOME10", "Fri"]),
            event_id=f"ev-{key}", event_occurred_at=self.clock.now(), decided_at=self.clock.now())
        handler = CommandHandler(engine=self.engine, log_=SendLog(cipher), catalog=Catalog(self.engine),
                                 clock=self.clock, metrics=SenderMetrics(CollectorRegistry()), on_commit=lambda: None)
        await handler([Item(None, command)])  # type: ignore[arg-type]
        return key

    def dispatcher(self, cipher: TokenCipher) -> Dispatcher:
        return Dispatcher(engine=self.engine, log_=SendLog(cipher), client=self.api, clock=self.clock,  # type: ignore[arg-type]
                          metrics=SenderMetrics(CollectorRegistry()), retry=RetryPolicy(max_attempts=3),
                          poll_seconds=0.01, doubt_timeout=timedelta(seconds=30), on_commit=lambda: None,
                          evidence_caught_up=lambda: None, rng=random.Random(7))

    async def message(self, key: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = await SendLog().message(conn, self.tenant, key)
        assert row is not None
        return row

    async def restrictions(self) -> list[str]:
        async with self.engine.connect() as conn:
            return [r.kind for r in await SendLog().restrictions(conn, self.tenant, self.account, self.clock.now())]


async def _shop(engine: AsyncEngine, token: str, key: bytes) -> Shop:
    """A tenant with an account whose token is stored under `key`, its WABA seeded with the catalog."""
    tenant, account, waba = f"u{uuid.uuid4().hex[:10]}", str(random.randint(10**14, 10**15 - 1)), uuid.uuid4().hex
    async with engine.begin() as conn:
        await AccountRepository(TokenCipher([key])).create(
            conn, tenant, NewAccount(account, waba, None, token, AccountPolicy(), START - timedelta(days=30)), START)
        await TemplateStore().seed(conn, waba, default_catalog(), START)
    return Shop(tenant, account, engine, FixedClock(START), Api())


async def test_an_unreadable_token_holds_the_messages_and_never_sends_an_empty_bearer(engine: AsyncEngine) -> None:
    shop = await _shop(engine, "old-tok", OLD)
    new_only = TokenCipher([NEW])  # this replica lost the key the token is under
    key = await shop.queue(new_only)
    assert await shop.dispatcher(new_only).dispatch_once() is False
    assert shop.api.bearers == []
    held = await shop.message(key)
    assert (held["state"], held["held_by"]) == ("queued", TOKEN_UNREADABLE)
    assert "SCRM_SECRETS_KEY" in held["error_reason"]
    assert await shop.restrictions() == [TOKEN_UNREADABLE]  # GET /v1/accounts shows it
    # PATCH sets a new token: the restriction goes and the held message is due at once
    async with engine.begin() as conn:
        await AccountRepository(new_only).update(conn, shop.tenant, shop.account, {"access_token": "fresh-tok"},
                                                 shop.clock.now())
    assert await shop.restrictions() == []
    assert await shop.dispatcher(new_only).dispatch_once() is True
    assert shop.api.bearers == ["fresh-tok"]
    assert (await shop.message(key))["state"] == "sent"


async def test_a_replica_that_reads_the_token_again_lifts_the_hold(engine: AsyncEngine) -> None:
    shop = await _shop(engine, "old-tok", OLD)
    key = await shop.queue(TokenCipher([NEW]))
    assert await shop.dispatcher(TokenCipher([NEW])).dispatch_once() is False
    assert await shop.restrictions() == [TOKEN_UNREADABLE]
    shop.clock.advance(timedelta(hours=2))  # the hold's recheck is due; the key is back on this replica
    assert await shop.dispatcher(TokenCipher([NEW, OLD])).dispatch_once() is True
    assert shop.api.bearers == ["old-tok"] and await shop.restrictions() == []
    assert (await shop.message(key))["state"] == "sent"


async def test_from_the_dev_key_to_a_real_key_no_token_is_lost_and_the_start_counts_what_is_left(
        engine: AsyncEngine, caplog: pytest.LogCaptureFixture) -> None:
    async with engine.begin() as conn:  # this test looks at every row of the database
        await conn.execute(text("DELETE FROM messages"))
        await conn.execute(text("DELETE FROM account_restrictions"))
        await conn.execute(text("DELETE FROM accounts"))
    shop = await _shop(engine, "dev-tok", DEV_KEY)  # written by a start without SCRM_SECRETS_KEY
    real, dev_fallback = TokenCipher.from_setting(NEW.decode())
    assert not dev_fallback
    caplog.set_level(logging.INFO, logger="sender.adapters.accounts")
    await prepare(engine, AccountRepository(real), tenant="none", bootstrap=None, now=START)
    assert "1 accounts; 0 encrypted now, 1 re-encrypted under the first key of SCRM_SECRETS_KEY (1 from the " \
           "built-in development key); 0 left not under the first key" in caplog.text
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT access_token FROM accounts WHERE account_id = :a"),
                                     {"a": shop.account})).scalar_one()
    assert TokenCipher([NEW]).decrypt(stored) == "dev-tok"  # under the real key now, the dev key not needed
    # a next start: nothing to do, and it says so (0 included)
    caplog.clear()
    await prepare(engine, AccountRepository(real), tenant="none", bootstrap=None, now=START)
    assert "1 accounts; 0 encrypted now, 0 re-encrypted" in caplog.text and "0 left not under" in caplog.text
    # a key dropped too early: the start counts the row left and restricts it; the key back lifts it
    await _shop(engine, "lost-tok", OLD)
    caplog.clear()
    await prepare(engine, AccountRepository(real), tenant="none", bootstrap=None, now=START)
    assert "1 left not under the first key" in caplog.text
    caplog.clear()
    await prepare(engine, AccountRepository(TokenCipher([NEW, OLD])), tenant="none", bootstrap=None, now=START)
    assert "1 re-encrypted" in caplog.text and "0 left not under" in caplog.text
    assert "1 accounts' TOKEN_UNREADABLE restriction lifted" in caplog.text
