"""R-S2 at send time against the real PostgreSQL (issue 7): a command's template is its account's WABA's; one
that is not APPROVED — paused by a webhook, disabled, rejected, deleted — fails at once with the reason (and the
failed `message.status` carries it to the decision story); approved again, the next message is sent. Template
webhooks also carry quality and category, and never touch another tenant's WABA."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import FixedClock
from scrm_common.contracts.commands import SendMessage, TemplateButton, TemplateHeader, TemplateMessage
from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import TemplateUpdated, TemplateUpdateData
from scrm_common.db import make_engine, migrate
from scrm_common.kafka.consumer import Item
from sender.adapters.cloud_api import Accepted
from sender.adapters.db import Catalog, SendLog, default_catalog
from sender.adapters.templates import TemplateStore
from sender.domain.outcomes import RetryPolicy
from sender.domain.templates import from_components
from sender.handlers import CommandHandler, Dispatcher, EvidenceHandler, SenderMetrics
from sender.main import MIGRATIONS, SCHEMA

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
WELCOME = ["Ana", "10", "WELCOME10", "Friday"]
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
class Api:
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, *, phone_number_id: str, access_token: str, body: dict[str, Any]) -> Accepted:  # noqa: ARG002
        self.calls.append(body)
        return Accepted(f"wamid.{uuid.uuid4().hex}", body["to"].lstrip("+"), body["to"], "accepted")


@dataclass
class Tenant:
    name: str
    account: str
    waba: str
    clock: FixedClock
    api: Api
    engine: AsyncEngine
    commands: CommandHandler
    dispatcher: Dispatcher
    evidence: EvidenceHandler

    def command(self, template: TemplateMessage | None = None) -> SendMessage:
        n = next(_seq)
        return SendMessage(
            idempotency_key=f"{self.name}|welcome|{n}", tenant=self.name, account_id=self.account, flow="welcome",
            category="marketing", contact_key=f"c{n}", to=f"+49151{random.randint(10_000_000, 99_999_999)}",
            template=template or TemplateMessage(name="welcome", language="en_US", parameters=WELCOME),
            event_id=f"ev-{n}", event_occurred_at=self.clock.now(), decided_at=self.clock.now())

    async def queue(self, *commands: SendMessage) -> None:
        await self.commands([Item(None, c) for c in commands])  # type: ignore[arg-type]

    async def dispatch(self) -> None:
        """Dispatch until nothing is due, the clock past each marketing message's pacing gap (R-S3)."""
        for _ in range(20):
            self.clock.advance(timedelta(seconds=10))
            if not await self.dispatcher.dispatch_once():
                return
        raise AssertionError("dispatch never settled")

    async def webhook(self, tenant: str | None = None, **data: Any) -> None:
        event = TemplateUpdated(event_id=f"tpl-{uuid.uuid4().hex}", type="template.updated", occurred_at=self.clock.now(),
                                data=TemplateUpdateData(**({"field": "message_template_status_update", "name": "welcome",
                                                            "waba_id": self.waba} | data)))
        await self.evidence([Item(None, EventRecord(tenant or self.name, event, None, None))])  # type: ignore[arg-type]

    async def row(self, key: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = await SendLog().message(conn, self.name, key)
        assert row is not None
        return row

    async def template(self, name: str = "welcome", language: str = "en_US") -> dict[str, Any]:
        async with self.engine.connect() as conn:
            return dict((await conn.execute(text(
                "SELECT status, quality, category, rejected_reason FROM templates WHERE waba_id = :w AND name = :n "
                "AND language = :l"), {"w": self.waba, "n": name, "l": language})).one()._mapping)

    async def failed_events(self, key: str) -> list[tuple[str, str | None]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT value FROM outbox ORDER BY id"))).all()
        events = [json.loads(r.value) for r in rows]
        return [(e["data"]["status"], e["data"]["error_reason"]) for e in events
                if e["type"] == "message.status" and e["data"].get("idempotency_key") == key]


async def _tenant(engine: AsyncEngine) -> Tenant:
    name = f"t{uuid.uuid4().hex[:10]}"
    account, waba = str(random.randint(10**14, 10**15 - 1)), f"waba-{name}"
    clock = FixedClock(START)
    log = SendLog()
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO accounts(tenant, account_id, access_token, waba_id, created_at) "
                                "VALUES (:t, :a, 'tok', :w, :at)"), {"t": name, "a": account, "w": waba,
                                                                     "at": START - timedelta(days=30)})
        await TemplateStore().seed(conn, waba, default_catalog(), START)
    metrics = SenderMetrics(CollectorRegistry())
    api = Api()
    retry = RetryPolicy(max_attempts=3)
    catalog = Catalog(engine)
    return Tenant(
        name, account, waba, clock, api, engine,
        CommandHandler(engine=engine, log_=log, catalog=catalog, clock=clock, metrics=metrics, on_commit=lambda: None),
        Dispatcher(engine=engine, log_=log, client=api, clock=clock, metrics=metrics, retry=retry,  # type: ignore[arg-type]
                   poll_seconds=0.01, doubt_timeout=timedelta(seconds=30), on_commit=lambda: None,
                   evidence_caught_up=lambda: None, rng=random.Random(7)),
        EvidenceHandler(engine=engine, log_=log, metrics=metrics, clock=clock, retry=retry, catalog=catalog,
                        rng=random.Random(7)))


@pytest.fixture
async def tenant(engine: AsyncEngine) -> Tenant:
    return await _tenant(engine)


async def test_paused_by_webhook_the_next_message_fails_with_the_reason_and_approved_again_it_is_sent(
        tenant: Tenant) -> None:
    await tenant.webhook(event="PAUSED", language="en_US", reason="LOW_QUALITY")
    paused = tenant.command()
    await tenant.queue(paused)
    await tenant.dispatch()
    reason = "template welcome (en_US) is paused"
    row = await tenant.row(paused.idempotency_key)
    assert (row["state"], row["error_reason"], row["held_by"]) == ("failed", reason, None)
    assert tenant.api.calls == []
    # the failed message.status carries the reason: the trigger-engine's decision story tells it
    assert await tenant.failed_events(paused.idempotency_key) == [("failed", reason)]
    # another language of the template is not paused
    german = tenant.command(TemplateMessage(name="welcome", language="de", parameters=WELCOME))
    await tenant.queue(german)

    await tenant.webhook(event="APPROVED", language="en_US")
    resumed = tenant.command()
    await tenant.queue(resumed)
    await tenant.dispatch()
    assert [(await tenant.row(c.idempotency_key))["state"] for c in (paused, german, resumed)] == [
        "failed", "sent", "sent"]
    assert len(tenant.api.calls) == 2


async def test_a_message_queued_before_its_template_was_paused_fails_at_dispatch(tenant: Tenant) -> None:
    queued = tenant.command()
    await tenant.queue(queued)
    await tenant.webhook(event="PAUSED")  # every language
    await tenant.dispatch()
    row = await tenant.row(queued.idempotency_key)
    assert (row["state"], row["error_reason"]) == ("failed", "template welcome (en_US) is paused")
    assert tenant.api.calls == []
    assert await tenant.failed_events(queued.idempotency_key) == [("failed", "template welcome (en_US) is paused")]


@pytest.mark.parametrize(("event", "reason"), [
    ("DISABLED", "template welcome (en_US) is disabled"),
    ("REJECTED", "template welcome (en_US) is rejected"),
    ("PENDING_DELETION", "template welcome (en_US) is pending deletion"),
    ("FLAGGED", None),  # still approved at Meta: sent
])
async def test_every_status_but_approved_fails_the_send(tenant: Tenant, event: str, reason: str | None) -> None:
    await tenant.webhook(event=event, language="en_US", reason="INVALID_FORMAT")
    command = tenant.command()
    await tenant.queue(command)
    await tenant.dispatch()
    row = await tenant.row(command.idempotency_key)
    assert (row["state"], row["error_reason"]) == (("failed", reason) if reason else ("sent", None))
    stored = await tenant.template()
    assert stored["rejected_reason"] == ("INVALID_FORMAT" if event == "REJECTED" else None)


async def test_an_unknown_template_fails_naming_it_and_the_account(tenant: Tenant) -> None:
    command = tenant.command(TemplateMessage(name="welcome", language="fr", parameters=WELCOME))
    await tenant.queue(command)
    row = await tenant.row(command.idempotency_key)
    assert (row["state"], row["error_reason"]) == (
        "failed", f"template welcome (fr) not found for account {tenant.account}")


async def test_quality_and_category_updates_are_stored(tenant: Tenant) -> None:
    await tenant.webhook(field="message_template_quality_update", quality="RED", previous_quality="GREEN")
    await tenant.webhook(field="template_category_update", event="CATEGORY_UPDATE_PENDING", category="UTILITY")
    assert (await tenant.template())["category"] == "marketing"  # only announced
    await tenant.webhook(field="template_category_update", event="CATEGORY_UPDATED", category="UTILITY",
                         language="en_US")
    stored = await tenant.template()
    assert (stored["status"], stored["quality"], stored["category"]) == ("APPROVED", "RED", "utility")
    assert (await tenant.template(language="de"))["category"] == "marketing"


async def test_a_webhook_never_touches_another_tenants_waba(engine: AsyncEngine) -> None:
    mine, other = await _tenant(engine), await _tenant(engine)
    # tenant `other` is told about `mine`'s WABA (a mis-routed event): nothing changes
    await mine.webhook(tenant=other.name, event="PAUSED")
    assert (await mine.template())["status"] == "APPROVED"
    # without a WABA id, an event reaches only the tenant's own WABAs
    await other.webhook(waba_id=None, event="PAUSED", language="en_US")
    assert ((await mine.template())["status"], (await other.template())["status"]) == ("APPROVED", "PAUSED")


async def test_header_and_button_parameters_must_fit_the_templates_components(tenant: Tenant) -> None:
    shipped = from_components(name="shipped", language="en_US", category="utility", status="APPROVED", components=[
        {"type": "HEADER", "format": "IMAGE"}, {"type": "BODY", "text": "Order {{1}} is on its way"},
        {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track", "url": "https://t.example/{{1}}"}]}])
    async with tenant.engine.begin() as conn:
        await TemplateStore().seed(conn, tenant.waba, [shipped], START)
    good = TemplateMessage(name="shipped", language="en_US", parameters=["A1"],
                           header=TemplateHeader(type="image", link="https://cdn.example/p.png"),
                           buttons=[TemplateButton(index=0, sub_type="url", parameter="A1")])
    no_button = good.model_copy(update={"buttons": []})
    no_header = good.model_copy(update={"header": None})
    commands = [tenant.command(t) for t in (good, no_button, no_header)]
    await tenant.queue(*commands)
    assert [((r := await tenant.row(c.idempotency_key))["state"], r["error_reason"]) for c in commands] == [
        ("queued", None), ("failed", "template shipped needs the URL parameter of button 0"),
        ("failed", "template shipped needs a image header parameter")]
