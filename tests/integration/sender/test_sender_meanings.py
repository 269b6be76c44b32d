"""The sender's handlers against the real PostgreSQL: error codes by their meaning (R-S7), the wa_id learned
from each send and account restrictions (issue 5). The Cloud API is a scripted
double and time a clock moved by hand, so a 24 h retry and a restriction's expiry take no waiting."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import FixedClock
from scrm_common.contracts.commands import SendMessage, TemplateMessage
from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import (
    AccountUpdated,
    AccountUpdateData,
    MessageStatus,
    Restriction,
    StatusData,
)
from scrm_common.db import make_engine, migrate
from scrm_common.identity import match_key
from scrm_common.kafka.consumer import Item
from sender.adapters.cloud_api import Accepted, Rejected, Unknown
from sender.adapters.db import Catalog, SendLog, default_catalog
from sender.adapters.templates import TemplateStore
from sender.domain.outcomes import RetryPolicy
from sender.handlers import CommandHandler, Dispatcher, EvidenceHandler, SenderMetrics
from sender.main import MIGRATIONS, SCHEMA

START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
ACCOUNT = "100000000000001"
ORDER_PARAMS = ["A1", "Ana", "1 item", "10,00 €", "0,00 €", "10,00 €", "https://t.example/1", "Shop"]
_seq = itertools.count(1)


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
class ScriptedCloudApi:
    """Answers each send with the next scripted answer (a function of the body), else accepts it."""

    answers: deque[Callable[[dict[str, Any]], Any]] = field(default_factory=deque)
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, *, phone_number_id: str, access_token: str, body: dict[str, Any]) -> Any:  # noqa: ARG002
        self.calls.append(body)
        if self.answers:
            return self.answers.popleft()(body)
        return accept(body)

    def to(self, phone: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["to"] == phone]


def accept(body: dict[str, Any], wa_id: str | None = None, status: str | None = None) -> Accepted:
    digits = body["to"].lstrip("+")
    return Accepted(f"wamid.{uuid.uuid4().hex}", wa_id or digits, body["to"], status)


def reject(code: int, status: int = 400) -> Callable[[dict[str, Any]], Rejected]:
    return lambda _body: Rejected(code, status, f"details of {code}")


@dataclass
class Sender:
    tenant: str
    clock: FixedClock
    api: ScriptedCloudApi
    log: SendLog
    engine: AsyncEngine
    commands: CommandHandler
    dispatcher: Dispatcher
    evidence: EvidenceHandler

    def command(self, phone: str, *, key: str | None = None, text_body: str | None = None) -> SendMessage:
        n = next(_seq)
        template = None if text_body else TemplateMessage(name="order_confirmation", language="en_US",
                                                          parameters=ORDER_PARAMS)
        return SendMessage(
            idempotency_key=key or f"{self.tenant}|order_confirmation|{n}", tenant=self.tenant, account_id=ACCOUNT,
            flow="order_confirmation", category="utility", contact_key=f"cust-{n}", to=phone, template=template,
            text=text_body, event_id=f"ev-{n}", event_occurred_at=self.clock.now(), decided_at=self.clock.now())

    async def queue(self, *commands: SendMessage) -> None:
        await self.commands([Item(None, c) for c in commands])  # type: ignore[arg-type]

    async def dispatch(self) -> None:
        """Dispatch until nothing is due (the clock does not move)."""
        for _ in range(20):
            if not await self.dispatcher.dispatch_once():
                return
        raise AssertionError("dispatch never settled")

    async def inbound(self, phone: str) -> None:
        """The contact wrote a minute ago: its 24 h window is open, a free-form reply may go (the send gate)."""
        async with self.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO reachability(tenant, number, last_inbound_at, updated_at) VALUES (:t, :n, :at, :at) "
                "ON CONFLICT (tenant, number) DO UPDATE SET last_inbound_at = EXCLUDED.last_inbound_at"),
                {"t": self.tenant, "n": match_key(phone), "at": self.clock.now() - timedelta(minutes=1)})

    async def report(self, *events: Any) -> None:
        await self.evidence([Item(None, EventRecord(self.tenant, e, None, None)) for e in events])  # type: ignore[arg-type]

    async def row(self, key: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = await self.log.message(conn, self.tenant, key)
        assert row is not None, key
        return row

    async def invalid(self) -> dict[str, dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await self.log.list_invalid_numbers(conn, self.tenant, self.clock.now())
        return {r["phone"]: r for r in rows}

    async def events(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT key, value FROM outbox ORDER BY id"))).all()
        return [json.loads(r.value) for r in rows if bytes(r.key).decode().startswith(self.tenant + ":")]

    def status(self, key: str, wamid: str, status: str, code: int | None = None) -> MessageStatus:
        return MessageStatus(
            event_id=f"wh-{uuid.uuid4().hex}", type="message.status", occurred_at=self.clock.now(), contact=None,
            data=StatusData(message_id=wamid, status=status, error_code=code,  # type: ignore[arg-type]
                            error_reason=f"details of {code}" if code else None, idempotency_key=key))


@pytest.fixture
async def sender(engine: AsyncEngine) -> Sender:
    tenant = f"t{uuid.uuid4().hex[:10]}"
    clock = FixedClock(START)
    log = SendLog()
    async with engine.begin() as conn:
        await log.bootstrap(conn, tenant=tenant, account_id=ACCOUNT, access_token="tok", throughput=80.0,
                            created_at=START - timedelta(days=30), waba_id=f"waba-{tenant}")
        await TemplateStore().seed(conn, f"waba-{tenant}", default_catalog(), START)
    metrics = SenderMetrics(CollectorRegistry())
    api = ScriptedCloudApi()
    retry = RetryPolicy(max_attempts=3)
    catalog = Catalog(engine, ttl_seconds=0.0)
    return Sender(
        tenant, clock, api, log, engine,
        CommandHandler(engine=engine, log_=log, catalog=catalog, clock=clock, metrics=metrics, on_commit=lambda: None),
        Dispatcher(engine=engine, log_=log, client=api, clock=clock, metrics=metrics, retry=retry,  # type: ignore[arg-type]
                   poll_seconds=0.01, doubt_timeout=timedelta(seconds=30), on_commit=lambda: None,
                   evidence_caught_up=lambda: None, rng=random.Random(7), invalid_number_ttl=timedelta(days=30)),
        EvidenceHandler(engine=engine, log_=log, metrics=metrics, clock=clock, retry=retry, catalog=catalog,
                        invalid_number_ttl=timedelta(days=30), rng=random.Random(7)))


def _phone() -> str:
    return f"+49151{random.randint(10_000_000, 99_999_999)}"


# -- error codes ---------------------------------------------------------------------------------------------


async def test_a_synchronous_131026_is_retried_once_after_24h_and_only_then_marks_the_number(sender: Sender) -> None:
    phone = _phone()
    first = sender.command(phone)
    sender.api.answers.append(reject(131026))
    await sender.queue(first)
    await sender.dispatch()
    row = await sender.row(first.idempotency_key)
    assert (row["state"], row["error_code"], row["late_retry_used"]) == ("queued", 131026, True)
    assert row["next_attempt_at"] == START + timedelta(hours=24)
    assert await sender.invalid() == {}

    # the number is not marked: the next order confirmation to it is sent at once
    second = sender.command(phone)
    await sender.queue(second)
    await sender.dispatch()
    assert (await sender.row(second.idempotency_key))["state"] == "sent"
    assert len(sender.api.to(phone)) == 2

    # not before 24 h …
    sender.clock.advance(timedelta(hours=23, minutes=59))
    await sender.dispatch()
    assert len(sender.api.to(phone)) == 2
    # … then once, with the same idempotency key; it fails again: now the number is marked, for 30 days
    sender.clock.advance(timedelta(minutes=1))
    sender.api.answers.append(reject(131026))
    await sender.dispatch()
    calls = sender.api.to(phone)
    assert len(calls) == 3 and calls[-1]["biz_opaque_callback_data"] == first.idempotency_key
    row = await sender.row(first.idempotency_key)
    assert (row["state"], row["error_code"], row["attempts"]) == ("failed", 131026, 2)
    assert "failed again after the 24 h retry" in row["error_reason"]
    marks = await sender.invalid()
    assert marks[phone]["code"] == 131026
    assert marks[phone]["expires_at"] == sender.clock.now() + timedelta(days=30)

    third = sender.command(phone)
    await sender.queue(third)
    refused = await sender.row(third.idempotency_key)
    assert refused["state"] == "failed" and "marked invalid" in refused["error_reason"]

    # the mark expires: 30 days later the number is tried again
    sender.clock.advance(timedelta(days=30, seconds=1))
    fourth = sender.command(phone)
    await sender.queue(fourth)
    await sender.dispatch()
    assert (await sender.row(fourth.idempotency_key))["state"] == "sent"


@pytest.mark.parametrize("code", [131030, 131047, 132001])
async def test_request_errors_fail_at_once_and_never_mark_the_number(sender: Sender, code: int) -> None:
    phone = _phone()
    command = sender.command(phone)
    sender.api.answers.append(reject(code))
    await sender.queue(command)
    await sender.dispatch()
    row = await sender.row(command.idempotency_key)
    assert (row["state"], row["error_code"], row["late_retry_used"]) == ("failed", code, False)
    assert await sender.invalid() == {}
    failed = [e for e in await sender.events() if e["type"] == "message.status"]
    assert [(e["data"]["status"], e["data"]["error_code"]) for e in failed] == [("failed", code)]


async def test_a_synchronous_131050_fails_without_retry_and_reports_the_opt_out(sender: Sender) -> None:
    phone = _phone()
    command = sender.command(phone)
    sender.api.answers.append(reject(131050))
    await sender.queue(command)
    await sender.dispatch()
    assert (await sender.row(command.idempotency_key))["state"] == "failed"
    types = [(e["type"], e["data"].get("value")) for e in await sender.events()]
    assert types == [("contact.marketing_preference_changed", "stop"), ("message.status", None)]
    sender.clock.advance(timedelta(days=2))
    await sender.dispatch()
    assert len(sender.api.to(phone)) == 1


async def test_an_exhausted_131000_gets_the_one_24h_retry(sender: Sender) -> None:
    phone = _phone()
    command = sender.command(phone)
    sender.api.answers.extend([reject(131000, 500)] * 3)
    await sender.queue(command)
    for _ in range(3):
        await sender.dispatch()
        sender.clock.advance(timedelta(minutes=1))  # past any backoff
    row = await sender.row(command.idempotency_key)
    assert (row["state"], row["attempts"], row["late_retry_used"]) == ("queued", 3, True)
    assert "gave up after 3 attempts" in row["error_reason"]
    sender.clock.advance(timedelta(hours=24))
    await sender.dispatch()
    assert (await sender.row(command.idempotency_key))["state"] == "sent"
    assert len(sender.api.to(phone)) == 4


async def test_an_expired_token_holds_the_account_without_using_attempts(sender: Sender) -> None:
    phones = [_phone(), _phone()]
    first, second = (sender.command(p) for p in phones)
    sender.api.answers.append(reject(190, 401))
    await sender.queue(first)
    await sender.dispatch()
    row = await sender.row(first.idempotency_key)
    assert (row["state"], row["attempts"], row["error_code"]) == ("queued", 0, 190)
    assert row["next_attempt_at"] == START + timedelta(minutes=10)
    # another message of the account waits too, with the hold as its reason; nothing reaches Meta
    await sender.queue(second)
    await sender.dispatch()
    held = await sender.row(second.idempotency_key)
    assert (held["state"], held["held_by"]) == ("queued", "error:190")
    assert held["error_reason"].startswith("account held after error 190 until")
    assert len(sender.api.calls) == 1
    sender.clock.advance(timedelta(minutes=10))
    await sender.dispatch()
    assert [(await sender.row(c.idempotency_key))["state"] for c in (first, second)] == ["sent", "sent"]


# -- identities ----------------------------------------------------------------------------------------------


async def test_the_wa_id_meta_answers_is_logged_and_published_with_the_phone(sender: Sender) -> None:
    phone = "+525512345678"
    command = sender.command(phone)
    sender.api.answers.append(lambda body: accept(body, wa_id="5215512345678", status="held_for_quality_assessment"))
    await sender.queue(command)
    await sender.dispatch()
    row = await sender.row(command.idempotency_key)
    assert (row["state"], row["wa_id"], row["provider_message_status"]) == (
        "sent", "5215512345678", "held_for_quality_assessment")
    [sent] = [e for e in await sender.events() if e["data"].get("status") == "sent"]
    assert sent["contact"]["phone"] == phone and sent["contact"]["wa_id"] == "5215512345678"
    assert sent["data"]["message_id"] == row["wamid"]


# -- asynchronous failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [131026, 131049])
async def test_an_async_failure_schedules_the_24h_retry_and_old_news_changes_nothing(sender: Sender,
                                                                                     code: int) -> None:
    phone = _phone()
    command = sender.command(phone)
    key = command.idempotency_key
    await sender.queue(command)
    await sender.dispatch()
    w1 = (await sender.row(key))["wamid"]
    await sender.report(sender.status(key, w1, "failed", code))
    row = await sender.row(key)
    assert (row["state"], row["late_retry_used"], row["wamid"]) == ("queued", True, None)
    assert row["next_attempt_at"] == START + timedelta(hours=24)
    assert await sender.invalid() == {}
    async with sender.engine.connect() as conn:  # 131049: the number gets no marketing for 24 h (META-131049)
        blocked = (await conn.execute(text(
            "SELECT marketing_blocked_until FROM reachability WHERE tenant = :t AND number = :n"),
            {"t": sender.tenant, "n": phone.lstrip("+")})).scalar()
    assert blocked == (START + timedelta(hours=24) if code == 131049 else None)
    # Meta repeats itself and reorders: the first attempt's reports are old news
    await sender.report(sender.status(key, w1, "failed", code), sender.status(key, w1, "delivered"))
    assert (await sender.row(key))["state"] == "queued"

    sender.clock.advance(timedelta(hours=24))
    await sender.dispatch()
    row = await sender.row(key)
    w2 = row["wamid"]
    assert row["state"] == "sent" and w2 != w1
    sent_ids = [e["event_id"] for e in await sender.events() if e["data"].get("status") == "sent"]
    assert len(sent_ids) == 2 and len(set(sent_ids)) == 2  # the retry's wamid is news to every consumer

    await sender.report(sender.status(key, w2, "failed", code))
    row = await sender.row(key)
    assert (row["state"], row["error_code"]) == ("failed", code)
    assert (phone in await sender.invalid()) is (code == 131026)


@pytest.mark.parametrize("first", ["async 131049", "sync 131000 exhausted"])
async def test_one_131026_on_a_24h_retry_taken_for_another_reason_fails_the_message_but_marks_nothing(
        sender: Sender, first: str) -> None:
    """131026 includes temporary causes: a number is marked invalid only when the retried 131026 fails again."""
    phone = _phone()
    command = sender.command(phone)
    key = command.idempotency_key
    await sender.queue(command)
    if first == "async 131049":
        await sender.dispatch()
        await sender.report(sender.status(key, (await sender.row(key))["wamid"], "failed", 131049))
    else:
        sender.api.answers.extend([reject(131000, 500)] * 3)
        for _ in range(3):
            await sender.dispatch()
            sender.clock.advance(timedelta(minutes=1))
    assert (await sender.row(key))["late_retry_used"] is True
    sender.clock.advance(timedelta(hours=24))
    await sender.dispatch()
    await sender.report(sender.status(key, (await sender.row(key))["wamid"], "failed", 131026))
    row = await sender.row(key)
    assert (row["state"], row["error_code"]) == ("failed", 131026)
    assert "failed again after the 24 h retry" in row["error_reason"]
    assert await sender.invalid() == {}
    # the next order confirmation to the number is sent, not refused
    again = sender.command(phone)
    await sender.queue(again)
    await sender.dispatch()
    assert (await sender.row(again.idempotency_key))["state"] == "sent"


async def test_a_late_report_on_the_first_wamid_never_settles_the_24h_retry_left_in_doubt(sender: Sender) -> None:
    """The 24 h retry carries the same key (biz_opaque_callback_data) as the first attempt: only a report on
    its own wamid may settle it, whatever Meta redelivers about the first one (webhooks are retried for days)."""
    command = sender.command(_phone())
    key = command.idempotency_key
    await sender.queue(command)
    await sender.dispatch()
    w1 = (await sender.row(key))["wamid"]
    await sender.report(sender.status(key, w1, "failed", 131026))
    sender.clock.advance(timedelta(hours=24))
    sender.api.answers.append(lambda _body: Unknown("ReadTimeout"))  # Meta took it as w2; we never heard
    await sender.dispatch()
    assert (await sender.row(key))["state"] == "sending"
    for old in ("sent", "delivered", "read", "failed"):
        await sender.report(sender.status(key, w1, old, 131026 if old == "failed" else None))
        row = await sender.row(key)
        assert (row["state"], row["wamid"]) == ("sending", None), old
    await sender.report(sender.status(key, "wamid.w2", "delivered"))
    row = await sender.row(key)
    assert (row["state"], row["wamid"]) == ("sent", "wamid.w2")
    assert await sender.invalid() == {}


async def test_an_async_spam_limit_holds_the_account(sender: Sender) -> None:
    command = sender.command(_phone())
    await sender.queue(command)
    await sender.dispatch()
    wamid = (await sender.row(command.idempotency_key))["wamid"]
    await sender.report(sender.status(command.idempotency_key, wamid, "failed", 131048))
    row = await sender.row(command.idempotency_key)
    assert (row["state"], row["held_by"], row["next_attempt_at"]) == ("queued", "error:131048",
                                                                      START + timedelta(hours=6))


# -- account restrictions ------------------------------------------------------------------------------------


def _account_update(clock: FixedClock, **data: Any) -> AccountUpdated:
    return AccountUpdated(event_id=f"acc-{uuid.uuid4().hex}", type="account.updated", occurred_at=clock.now(),
                          data=AccountUpdateData(field="account_update", **data))


async def test_a_restricted_account_sends_no_template_until_the_restriction_expires(sender: Sender) -> None:
    until = START + timedelta(hours=6)
    await sender.report(_account_update(sender.clock, account_id=ACCOUNT, event="ACCOUNT_RESTRICTION", restrictions=[
        Restriction(type="RESTRICTED_BIZ_INITIATED_MESSAGING", expires_at=until)]))
    template, reply = sender.command(_phone()), sender.command(_phone(), text_body="Your parcel is on its way")
    await sender.inbound(reply.to)
    await sender.queue(template, reply)
    await sender.dispatch()
    held = await sender.row(template.idempotency_key)
    assert (held["state"], held["next_attempt_at"], held["attempts"]) == ("queued", until, 0)
    assert held["error_reason"] == ("account restricted (RESTRICTED_BIZ_INITIATED_MESSAGING) until "
                                    "2026-11-30T15:00:00+00:00")
    assert (await sender.row(reply.idempotency_key))["state"] == "sent"  # a reply in the window may go
    assert [c["type"] for c in sender.api.calls] == ["text"]

    sender.clock.advance(timedelta(hours=6))
    await sender.dispatch()
    sent = await sender.row(template.idempotency_key)
    assert (sent["state"], sent["held_by"], sent["error_reason"]) == ("sent", None, None)


async def test_disablement_holds_everything_until_reinstated(sender: Sender) -> None:
    await sender.report(_account_update(sender.clock, account_id=ACCOUNT, event="DISABLED_UPDATE",
                                        ban_state="DISABLE"))
    template, reply = sender.command(_phone()), sender.command(_phone(), text_body="Thanks!")
    await sender.inbound(reply.to)
    await sender.queue(template, reply)
    await sender.dispatch()
    for c in (template, reply):
        row = await sender.row(c.idempotency_key)
        assert (row["state"], row["held_by"]) == ("queued", "DISABLED")
        assert row["error_reason"] == "account disabled by Meta until reinstated"
    sender.clock.advance(timedelta(minutes=5))
    await sender.report(_account_update(sender.clock, account_id=ACCOUNT, event="DISABLED_UPDATE",
                                        ban_state="REINSTATE"))
    await sender.dispatch()
    assert [(await sender.row(c.idempotency_key))["state"] for c in (template, reply)] == ["sent", "sent"]


@pytest.mark.parametrize(("first", "second", "restricted"), [
    ({"account_id": ACCOUNT, "waba_id": "waba-1"}, {"waba_id": "waba-1"}, True),  # the WABA was learned
    ({}, {"waba_id": "waba-unknown"}, True),  # an unknown WABA: every account of the tenant
    ({"account_id": ACCOUNT, "waba_id": "waba-1"}, {"waba_id": "waba-2"}, False),  # another WABA of ours
    ({"bootstrap": "waba-b"}, {"waba_id": "waba-b"}, True),  # the WABA configured at start
    ({"bootstrap": "waba-b"}, {"waba_id": "waba-2"}, False),
])
async def test_an_update_without_an_account_reaches_the_accounts_of_its_waba(
        sender: Sender, first: dict[str, str], second: dict[str, str], restricted: bool) -> None:
    if "bootstrap" in first:
        async with sender.engine.begin() as conn:
            await sender.log.bootstrap(conn, tenant=sender.tenant, account_id=ACCOUNT, access_token="tok",
                                       throughput=80.0, created_at=START, waba_id=first["bootstrap"])
    elif first:
        await sender.report(_account_update(sender.clock, event="ACCOUNT_VIOLATION", **first))
    if first:
        async with sender.engine.begin() as conn:  # a second account, of another WABA
            await sender.log.bootstrap(conn, tenant=sender.tenant, account_id="200", access_token="t2",
                                       throughput=80.0, created_at=START)
            await conn.execute(text("UPDATE accounts SET waba_id = 'waba-2' WHERE tenant = :t AND account_id = '200'"),
                               {"t": sender.tenant})
    await sender.report(_account_update(sender.clock, event="ACCOUNT_RESTRICTION", restrictions=[
        Restriction(type="RESTRICTED_BIZ_INITIATED_MESSAGING", expires_at=START + timedelta(days=1))], **second))
    async with sender.engine.connect() as conn:
        accounts = {a["account_id"]: a for a in await sender.log.accounts(conn, sender.tenant, sender.clock.now())}
    assert bool(accounts[ACCOUNT]["restrictions"]) is restricted
    if second.get("waba_id") == "waba-2":  # the other WABA's account is the one restricted
        assert [r["kind"] for r in accounts["200"]["restrictions"]] == ["RESTRICTED_BIZ_INITIATED_MESSAGING"]


# -- template status: tests/integration/sender/test_templates_send.py ------------------------------------------


# -- lock order between the dispatcher's settlement and the evidence consumer ------------------------------------


async def test_lock_messages_locks_exactly_the_rows_named_whatever_order_they_come_in(sender: Sender) -> None:
    commands = [sender.command(_phone()) for _ in range(4)]
    await sender.queue(*commands)
    keys = [c.idempotency_key for c in commands]
    named = [(sender.tenant, keys[3]), (sender.tenant, keys[0]), (sender.tenant, keys[3]), (sender.tenant, keys[2])]
    async with sender.engine.connect() as holder, sender.engine.connect() as other:
        async with holder.begin():
            await sender.log.lock_messages(holder, named)
            async with other.begin():
                free = (await other.execute(text(
                    "SELECT idempotency_key FROM messages WHERE tenant = :t FOR UPDATE SKIP LOCKED"),
                    {"t": sender.tenant})).scalars().all()
        assert sorted(free) == sorted([keys[1]])
        async with other.begin():  # released with the transaction
            free = (await other.execute(text(
                "SELECT idempotency_key FROM messages WHERE tenant = :t FOR UPDATE SKIP LOCKED"),
                {"t": sender.tenant})).scalars().all()
        assert sorted(free) == sorted(keys)
