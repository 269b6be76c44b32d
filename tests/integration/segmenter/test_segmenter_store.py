"""The segmenter's PostgreSQL store against the real embedded PostgreSQL: migration 002 turns the phone
directory into aliases (match keys agreeing with `match_key`), and identities, merges, currency settings
and lookups by any alias work through the real SQL."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import FixedClock
from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import Event, parse_event
from scrm_common.db import make_engine, migrate
from scrm_common.identity import match_key
from scrm_common.kafka.consumer import Item
from segmenter.adapters.db import SCHEMA, PostgresContactStore
from segmenter.bootstrap import MIGRATIONS
from segmenter.domain.aliases import lookup_aliases
from segmenter.domain.currency import CurrencySettings
from segmenter.domain.policy import SegmentPolicy
from segmenter.handlers import ApplyEvents, RefreshTiers, SegmenterMetrics

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
MX_PHONE, MX_WA = "+525512345678", "5215512345678"
_ids = iter(range(1, 10_000))


@pytest.fixture
def database_url(postgres: Any) -> str:
    """A fresh database per test (created synchronously, outside the test's event loop)."""
    return str(postgres.new_database())


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = make_engine(database_url, schema=SCHEMA, pool_size=2)
    yield made
    await made.dispose()


def _event(type_: str, contact: dict[str, Any] | None, at: datetime = T0, **data: Any) -> Event:
    raw: dict[str, Any] = {"event_id": f"ev-{next(_ids)}", "type": type_, "occurred_at": at.isoformat()}
    if contact is not None:
        raw["contact"] = contact
    if data or type_ not in ("contact.created", "contact.updated"):
        raw["data"] = data
    return parse_event(raw)


def _items(*events: Event, tenant: str = "shop") -> list[Item[EventRecord]]:
    return [Item(record=None, value=EventRecord(tenant, e, None, None)) for e in events]


@pytest.mark.parametrize("phone", ["+525512345678", "+5511987654321", "+551187654321", "+5491123456789",
                                   "+4915112345678"])
async def test_migration_turns_the_phone_directory_into_aliases(engine: AsyncEngine, tmp_path: Path,
                                                                phone: str) -> None:
    first = tmp_path / "first"
    first.mkdir()
    shutil.copy(MIGRATIONS / "001_init.sql", first / "001_init.sql")
    await migrate(engine, schema=SCHEMA, directory=first)
    features = json.dumps({"external_id": "cust-1", "phone": phone, "name": "Anna"})
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO contacts (tenant, contact_key, external_id, phone, features, activity_tier, computed_at) "
            "VALUES ('shop', 'cust-1', 'cust-1', :phone, CAST(:f AS jsonb), 'dormant', now())"),
            {"phone": phone, "f": features})
        await conn.execute(text("INSERT INTO contact_phones VALUES ('shop', :phone, 'cust-1')"), {"phone": phone})
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    async with engine.connect() as conn:
        aliases = {r[0]: r[1] for r in await conn.execute(text("SELECT alias, contact_key FROM contact_aliases"))}
    assert aliases == {"ext:cust-1": "cust-1", f"phone:{phone}": "cust-1", f"match:{match_key(phone)}": "cust-1"}
    store = PostgresContactStore(engine)
    found = await store.find("shop", "+" + match_key(phone), lookup_aliases("+" + match_key(phone)))
    assert found is not None and found[0] == "cust-1" and found[1].name == "Anna"


async def test_identities_merges_and_currencies_through_the_real_store(engine: AsyncEngine) -> None:
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    store = PostgresContactStore(engine)
    clock = FixedClock(T0 + 3 * H)
    metrics = SegmenterMetrics(CollectorRegistry())
    default = CurrencySettings()
    handle = ApplyEvents(store=store, clock=clock, policy=SegmentPolicy(), metrics=metrics, currency=default)

    # The customer wrote on WhatsApp first (wa_id only), then the shop created two ids for one number.
    await handle(_items(_event("message.inbound", {"wa_id": MX_WA, "profile_name": "Lucky"}, T0,
                               type="image", text="Hola")))
    await handle(_items(
        _event("contact.created", {"external_id": "guest-777", "phone": MX_PHONE, "name": "Lucía"}, T0 + H),
        _event("payment.succeeded", {"external_id": "cust-777", "phone": MX_PHONE}, T0 + H, order_id="J1",
               amount=1_000_000.0, currency="JPY"),
        _event("message.status", {"wa_id": "4915112345678"}, T0 + H, message_id="wamid.agent", status="read"),
    ))
    async with engine.connect() as conn:
        keys = [r[0] for r in await conn.execute(text("SELECT contact_key FROM contacts"))]
        aliases = {r[0]: r[1] for r in await conn.execute(text("SELECT alias, contact_key FROM contact_aliases"))}
    assert keys == ["guest-777"]  # one person; the status of an unknown number created nobody
    assert set(aliases.values()) == {"guest-777"}
    assert {"ext:guest-777", "ext:cust-777", f"phone:{MX_PHONE}", f"wa:{MX_WA}", "match:525512345678"} \
        <= set(aliases)
    for ref in ("cust-777", MX_WA, "+" + MX_WA, MX_PHONE):
        found = await store.find("shop", ref, lookup_aliases(ref))
        assert found is not None and found[0] == "guest-777", ref
    _, features = found
    assert (features.name, features.profile_name, features.inbound_messages) == ("Lucía", "Lucky", 1)
    async with engine.connect() as conn:
        tier = (await conn.execute(text("SELECT value_tier, wa_id FROM contacts"))).one()
    assert tuple(tier) == ("low", MX_WA)  # ¥1,000,000 without a JPY rate is kept apart

    # The tenant stores its rates: the refresher recomputes the tier.
    rates = CurrencySettings(rates={"JPY": Decimal("0.0061")}, as_of=date(2026, 11, 30))
    await store.put_currency("shop", rates, clock.now())
    stored = await store.currency("shop")
    assert stored is not None and stored.settings == rates and stored.updated_at == clock.now()
    assert await store.currency("other") is None
    refresher = RefreshTiers(store=store, clock=clock, policy=SegmentPolicy(), metrics=metrics,
                             interval_seconds=1, batch=10, currency=default)
    assert await refresher.refresh_once() == 1
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT value_tier FROM contacts"))).scalar_one() == "high"

    # A number change moves the person; the old number stays an alias.
    await handle(_items(_event("contact.number_changed", {"wa_id": MX_WA}, T0 + 2 * H, old_wa_id=MX_WA,
                               new_wa_id="5215587654321")))
    found = await store.find("shop", "5215587654321", lookup_aliases("5215587654321"))
    assert found is not None and found[0] == "guest-777" and found[1].wa_id == "5215587654321"
    again = await store.find("shop", MX_WA, lookup_aliases(MX_WA))
    assert again is not None and again[0] == "guest-777"


# --- R-S7's late retry: fail, then the retry under the same key with a new wamid -----------------------

_KEY = "shop:order_confirmation:o-1"
_D = timedelta(days=1)


def _late_retry_story() -> dict[str, Event]:
    shop = {"external_id": "cust-1", "phone": "+4915112345678", "wa_id": "4915112345678"}
    meta = {"phone": "+4915112345678", "wa_id": "4915112345678"}
    return {
        "first_sent": _event("message.status", shop, T0, message_id="wamid.1", status="sent", idempotency_key=_KEY),
        "first_failed": _event("message.status", meta, T0 + H, message_id="wamid.1", status="failed",
                               error_code=131026, idempotency_key=_KEY),
        "late_sent": _event("message.status", shop, T0 + H + _D, message_id="wamid.2", status="sent",
                            idempotency_key=_KEY),
        "late_delivered": _event("message.status", meta, T0 + 2 * H + _D, message_id="wamid.2", status="delivered",
                                 idempotency_key=_KEY),
        "late_read": _event("message.status", meta, T0 + 3 * H + _D, message_id="wamid.2", status="read",
                            idempotency_key=_KEY),
    }


@pytest.mark.parametrize("order", [
    ("first_sent", "first_failed", "late_sent", "late_delivered", "late_read"),
    ("late_read", "late_delivered", "late_sent", "first_failed", "first_sent"),
    ("first_failed", "late_read", "first_sent", "late_sent", "late_delivered"),
], ids=["in-order", "reversed", "mixed"])
async def test_a_late_retry_leaves_one_contact_tagged_by_the_retrys_read(engine: AsyncEngine,
                                                                          order: tuple[str, ...]) -> None:
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    store = PostgresContactStore(engine)
    handle = ApplyEvents(store=store, clock=FixedClock(T0 + 4 * H + _D), policy=SegmentPolicy(),
                         metrics=SegmenterMetrics(CollectorRegistry()))
    await handle(_items(_event("contact.created", {"external_id": "cust-1", "phone": "+4915112345678"}, T0 - _D)))
    story = _late_retry_story()
    for name in order:
        await handle(_items(story[name]))
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT contact_key, tags, wa_id FROM contacts"))).all()
    assert len(rows) == 1
    key, tags, wa_id = rows[0]
    assert (key, wa_id) == ("cust-1", "4915112345678")
    assert "read_no_reply" in tags and "activity:dormant" in tags
    found = await store.find("shop", "cust-1", lookup_aliases("cust-1"))
    assert found is not None and found[1].last_read_at == T0 + 3 * H + _D


async def test_a_status_of_a_message_the_platform_never_sent_changes_no_stored_contact(engine: AsyncEngine) -> None:
    """A number shared with an agent app: the app's read receipt (no idempotency key) leaves the contact as
    it was; the same receipt of our message (with the key) tags it read_no_reply."""
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    store = PostgresContactStore(engine)
    handle = ApplyEvents(store=store, clock=FixedClock(T0 + 2 * H), policy=SegmentPolicy(),
                         metrics=SegmenterMetrics(CollectorRegistry()))
    person = {"external_id": "cust-1", "phone": "+4915112345678"}
    receipt = {"phone": "+4915112345678", "wa_id": "4915112345678"}
    await handle(_items(_event("contact.created", person, T0), tenant="a"))
    await handle(_items(_event("contact.created", person, T0), tenant="b"))

    async def stored(tenant: str) -> tuple[Any, ...]:
        async with engine.connect() as conn:
            row = (await conn.execute(text("SELECT features, tags, wa_id FROM contacts WHERE tenant = :t"),
                                      {"t": tenant})).one()
            aliases = sorted(r[0] for r in await conn.execute(
                text("SELECT alias FROM contact_aliases WHERE tenant = :t"), {"t": tenant}))
        return (*row, aliases)

    before = await stored("a")
    await handle(_items(_event("message.status", receipt, T0 + H, message_id="wamid.agent", status="read"),
                        tenant="a"))
    await handle(_items(_event("message.status", receipt, T0 + H, message_id="wamid.ours", status="read",
                               idempotency_key="b:welcome:cust-1"), tenant="b"))
    assert await stored("a") == before
    assert "read_no_reply" not in before[1]
    assert "read_no_reply" in (await stored("b"))[1]


# --- issue 5: statuses are matched by the message, never dropped for their recipient ------------------

_SEND = "shop:winback:o-7"
_DE_PHONE = "+4915112345678"


@pytest.mark.parametrize("recipient", [None, {"user_id": "US.7730012345678901"}, {"wa_id": "999123456789"}],
                         ids=["no-recipient", "bsuid-only", "unmappable-wa-id"])
async def test_a_read_of_our_message_reaches_its_person_through_a_re_key_and_a_merge(
        engine: AsyncEngine, recipient: dict[str, Any] | None) -> None:
    """Sent to a number first known from a reply (contact "+49…"), which the shop then names cust-9 (re-key)
    and joins with cust-1 (merge): the read whose recipient finds nobody is cust-1's all the same."""
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    store = PostgresContactStore(engine)
    handle = ApplyEvents(store=store, clock=FixedClock(T0 + 3 * H), policy=SegmentPolicy(),
                         metrics=SegmenterMetrics(CollectorRegistry()))
    sent = {"phone": _DE_PHONE, "wa_id": _DE_PHONE[1:]}
    for batch in (
        [_event("contact.created", {"external_id": "cust-1", "phone": "+4915100000002"}, T0)],
        [_event("message.inbound", {"phone": _DE_PHONE}, T0, type="text", text="hi")],
        [_event("message.status", sent, T0 + H, message_id="wamid.7", status="sent", idempotency_key=_SEND)],
        [_event("contact.updated", {"external_id": "cust-9", "phone": _DE_PHONE}, T0 + H)],
        [_event("contact.updated", {"external_id": "cust-1", "phone": _DE_PHONE}, T0 + H),
         _event("contact.updated", {"external_id": "cust-9", "phone": "+4915100000002"}, T0 + H)],
        [_event("message.status", recipient, T0 + 2 * H, message_id="wamid.7", status="read",
                idempotency_key=_SEND)],
    ):
        await handle(_items(*batch))
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT contact_key, tags FROM contacts"))).all()
        sends = (await conn.execute(text("SELECT tenant, idempotency_key, contact_key FROM message_recipients")
                                    )).all()
    assert len(rows) == 1
    key, tags = rows[0]
    assert "read_no_reply" in tags  # read after the customer's last reply, unanswered since
    assert [tuple(s) for s in sends] == [("shop", _SEND, key)]
    found = await store.find("shop", key, lookup_aliases(key))
    assert found is not None and found[1].last_read_at == T0 + 2 * H
    assert found[1].wa_id in (None, _DE_PHONE[1:])  # an unknown recipient is not taken for the person
    async with engine.connect() as conn:
        learned = {r[0] for r in await conn.execute(text("SELECT alias FROM contact_aliases"))}
    assert not {"wa:999123456789", "user:US.7730012345678901"} & learned


async def test_a_status_of_an_unknown_send_with_an_unknown_recipient_changes_nothing(engine: AsyncEngine) -> None:
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    store = PostgresContactStore(engine)
    handle = ApplyEvents(store=store, clock=FixedClock(T0 + 3 * H), policy=SegmentPolicy(),
                         metrics=SegmenterMetrics(CollectorRegistry()))
    await handle(_items(_event("contact.created", {"external_id": "cust-1", "phone": _DE_PHONE}, T0)))
    await handle(_items(_event("message.status", {"phone": _DE_PHONE, "wa_id": _DE_PHONE[1:]}, T0 + H,
                               message_id="wamid.7", status="sent", idempotency_key=_SEND)))
    await handle(_items(_event("message.status", None, T0 + 2 * H, message_id="wamid.8", status="read",
                               idempotency_key="shop:winback:o-8")))
    found = await store.find("shop", "cust-1", lookup_aliases("cust-1"))
    assert found is not None and found[1].last_read_at is None
    async with engine.connect() as conn:
        sends = (await conn.execute(text("SELECT idempotency_key, contact_key FROM message_recipients"))).all()
    assert [tuple(s) for s in sends] == [(_SEND, "cust-1")]
