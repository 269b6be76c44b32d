"""A dead-lettered event leaves a line in its contact's decision story (real PostgreSQL, the real route):
on the person the event names by any alias, once per dead letter, never for records that are no event."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import HTTPException, Request
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import FixedClock
from scrm_common.contracts import topics
from scrm_common.contracts.envelope import EventRecord, encode_event
from scrm_common.db import make_engine, migrate
from scrm_common.http import Principal, bearer_token, service_app
from scrm_common.kafka.consumer import Item
from tests.unit.trigger_engine.factories import PHONE, T0, contact_created, payment
from trigger_engine.adapters.db import EngineRepository
from trigger_engine.adapters.http import build_router
from trigger_engine.dead_letters import StoryMetrics, TellDeadLetters, decode_dead_letter
from trigger_engine.domain.dead_letters import STORY_GROUP
from trigger_engine.domain.model import EngineConfig
from trigger_engine.handlers import EngineMetrics, EventHandler, StaticConfigs
from trigger_engine.main import MIGRATIONS, SCHEMA

AT = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)
_offsets = iter(range(1000, 100_000))


@pytest.fixture(scope="module")
def database_url(postgres: Any) -> str:
    return str(postgres.new_database())


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = make_engine(database_url, schema=SCHEMA, pool_size=4)
    await migrate(engine=made, schema=SCHEMA, directory=MIGRATIONS)
    yield made
    await made.dispose()


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass
class Record:
    """What the consume loop hands over: a dead-letter record of `scrm.dead-letter.v1`."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp: int = int(AT.timestamp() * 1000)
    partition: int = 0
    offset: int = field(default_factory=lambda: next(_offsets))


def dead_letter(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]], *,
                topic: str = topics.EVENTS, service: str | None = "trigger-engine", error: str = "DataError: boom",
                **more: Any) -> Record:
    """A dead letter as the consume loop writes it (issue 6 format; `service=None`: the older one)."""
    meta: dict[str, Any] = {"topic": topic, "partition": 3, "offset": next(_offsets), "error": error, "tries": 5}
    if service is not None:
        meta |= {"service": service, "failure": "exhausted", "at": AT.isoformat()}
    return Record(key, value, [*headers, ("dead_letter", json.dumps(meta | more).encode())])


def of_event(tenant: str, event: Any, **kw: Any) -> Record:
    key, value, headers = encode_event(tenant, event, ingested_at=T0)
    return dead_letter(key, value, headers, **kw)


async def tell(engine: AsyncEngine, *records: Record) -> float:
    """Hand the records to the story handler as its consumer would; return how many lines were new."""
    registry = CollectorRegistry()
    items = [Item(r, line) for r in records if (line := decode_dead_letter(r)) is not None]  # type: ignore[arg-type]
    if items:
        await TellDeadLetters(engine=engine, repository=EngineRepository(), metrics=StoryMetrics(registry))(items)
    return registry.get_sample_value("scrm_trigger_engine_story_dead_letters_total") or 0.0


async def create(engine: AsyncEngine, tenant: str, *events: Any) -> None:
    handler = EventHandler(engine=engine, repository=EngineRepository(), clock=FixedClock(T0),
                           configs=StaticConfigs(lambda t: EngineConfig(tenant=t, account_id="acct-1")),
                           metrics=EngineMetrics(CollectorRegistry()), on_commit=lambda: None)
    await handler([Item(None, EventRecord(tenant, e, T0, None)) for e in events])  # type: ignore[arg-type]


class Keys:
    """Each tenant's key is the tenant's name, with role `read`."""

    async def principal(self, request: Request) -> Principal:
        token = bearer_token(request)
        if not token.startswith("t"):
            raise HTTPException(401, detail="unknown API key")
        return Principal(token, role="read")

    def require(self, roles: tuple[str, ...]) -> Callable[[Request], Awaitable[Principal]]:
        async def dependency(request: Request) -> Principal:
            principal = await self.principal(request)
            if principal.role not in roles:
                raise HTTPException(403, detail="forbidden")
            return principal
        return dependency


async def story(engine: AsyncEngine, tenant: str, contact: str) -> list[dict[str, Any]]:
    """The contact's decision story through the real route, as a user reads it."""
    app = service_app("trigger-engine under test", "0")
    app.include_router(build_router(engine=engine, repository=EngineRepository(), keys=Keys()))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://te") as http:
        resp = await http.get(f"/v1/contacts/{contact}/decisions", headers={"Authorization": f"Bearer {tenant}"})
    assert resp.status_code == 200, resp.text
    return [d for d in resp.json()["decisions"] if d["outcome"] == "dead_lettered"]


async def test_a_dead_lettered_event_of_a_known_person_is_told_in_their_story(engine, tenant) -> None:
    await create(engine, tenant, contact_created(external_id="cust-1", phone=PHONE))
    poison = payment(external_id=None, phone=PHONE, event_id="pay-1")  # names the person by phone only
    assert await tell(engine, of_event(tenant, poison, error="DataError: invalid byte sequence 0x00")) == 1

    lines = await story(engine, tenant, "cust-1")  # read by another alias of the same person
    assert [(d["event_id"], d["event_type"], d["flow"]) for d in lines] == [("pay-1", "payment.succeeded",
                                                                            "dead_letter")]
    assert lines[0]["reason"] == "trigger-engine gave up on it (exhausted, 5 tries): DataError: invalid byte sequence 0x00"
    assert lines[0]["decided_at"].startswith("2026-11-30T09:30:00")
    assert await story(engine, tenant, PHONE) == lines
    assert await story(engine, f"t{uuid.uuid4().hex[:10]}", "cust-1") == [], "another tenant's story is its own"


async def test_redelivery_tells_a_dead_letter_once_but_each_dead_lettering_counts(engine, tenant) -> None:
    poison = payment(external_id="cust-2", phone=None, event_id="pay-2")
    record = of_event(tenant, poison)
    assert await tell(engine, record, record) == 1
    assert await tell(engine, record) == 0
    other_service = of_event(tenant, poison, service="segmenter")  # the same event, given up by another service
    assert await tell(engine, other_service) == 1
    lines = await story(engine, tenant, "cust-2")
    assert [d["reason"].split(" ")[0] for d in lines] == ["segmenter", "trigger-engine"]


async def test_an_event_that_no_longer_validates_is_still_told_for_the_contact_it_names(engine, tenant) -> None:
    value = json.dumps({"event_id": "pay-3", "type": "payment.succeeded", "occurred_at": "9999-12-31T23:59:59Z",
                        "contact": {"external_id": "cust-3", "name": "A\u0000"}, "data": {"amount": "lots"}})
    record = dead_letter(f"{tenant}:cust-3".encode(), value.encode(), [("tenant", tenant.encode())], service=None,
                         error="not a valid event: amount\u0000")
    assert await tell(engine, record) == 1
    lines = await story(engine, tenant, "cust-3")  # nobody knew cust-3: the line waits under its key
    assert [(d["event_id"], d["event_type"]) for d in lines] == [("pay-3", "payment.succeeded")]
    assert lines[0]["reason"] == "a consumer gave up on it (5 tries): not a valid event: amount\ufffd"


@pytest.mark.parametrize("case", ["no tenant", "no contact", "a command", "our own failure", "unreadable meta",
                                  "not json"])
async def test_records_that_are_no_event_of_a_contact_are_not_told(engine, tenant, case: str) -> None:
    event = payment(external_id="cust-4", phone=None, event_id="pay-4")
    key, value, headers = encode_event(tenant, event, ingested_at=T0)
    record = {
        "no tenant": lambda: dead_letter(None, b'{"event_id": "x", "contact": {"external_id": "cust-4"}}', []),
        "no contact": lambda: dead_letter(key, b'{"event_id": "x", "type": "payment.succeeded"}', headers),
        "a command": lambda: dead_letter(key, value, headers, topic=topics.SEND_COMMANDS),
        "our own failure": lambda: dead_letter(key, value, [*headers, ("dead_letter", b"{}")], topic=topics.DEAD_LETTER,
                                               service=STORY_GROUP),
        "unreadable meta": lambda: Record(key, value, [*headers, ("dead_letter", b"\xff{")]),
        "not json": lambda: dead_letter(key, b"\x00\xff", headers),
    }[case]()
    assert await tell(engine, record) == 0
    assert await story(engine, tenant, "cust-4") == []


def _at_one_place(tenant: str, event_id: str, *, letter_id: str | None, **meta: Any) -> Record:
    """A dead letter of a record at the fixed place events[3]@55, named `letter_id` by the consume loop."""
    key, value, headers = encode_event(tenant, payment(external_id="cust-5", phone=None, event_id=event_id),
                                       ingested_at=T0)
    record = dead_letter(key, value, headers, **meta)
    fields = {"topic": topics.EVENTS, "partition": 3, "offset": 55, "error": "DataError: boom", "tries": 1,
              "service": "trigger-engine", "failure": "deterministic", "at": AT.isoformat(), **meta}
    if letter_id is not None:
        fields["id"] = letter_id
    record.headers[-1] = ("dead_letter", json.dumps(fields).encode())
    return record


async def test_two_records_at_one_offset_are_two_lines_and_a_redelivery_is_none(engine, tenant) -> None:
    """The memory-only broker starts its offsets at 0 again on every run: the dead-letter id keeps apart
    two records given up on at the same place; the same dead letter read twice is still one line."""
    before_restart = _at_one_place(tenant, "pay-5a", letter_id="a" * 32)
    after_restart = _at_one_place(tenant, "pay-5b", letter_id="b" * 32)
    assert await tell(engine, before_restart) == 1
    assert await tell(engine, after_restart, before_restart) == 1
    assert await tell(engine, after_restart) == 0
    assert sorted(d["event_id"] for d in await story(engine, tenant, "cust-5")) == ["pay-5a", "pay-5b"]
    # Older dead letters without an id are still told once per place and service.
    legacy = _at_one_place(tenant, "pay-5c", letter_id=None, offset=56)
    assert await tell(engine, legacy, legacy) == 1
    assert await tell(engine, _at_one_place(tenant, "pay-5d", letter_id=None, offset=56)) == 0


async def test_a_dead_letter_without_its_value_is_told_for_the_contact_its_key_names(engine, tenant) -> None:
    """A record too large to keep whole is dead-lettered without its value: its key still names the contact."""
    await create(engine, tenant, contact_created(external_id="cust-6", phone=PHONE))
    for external_id, key in (("cust-6", f"{tenant}:cust-6"), (None, f"{tenant}:{PHONE}")):
        record = dead_letter(key.encode(), None, [("tenant", tenant.encode()), ("type", b"payment.succeeded")],
                             truncated=True, value_size=1_048_000, value_sha256="0" * 64,
                             id=f"{external_id or 'phone'}-letter")
        assert await tell(engine, record) == 1
    lines = await story(engine, tenant, "cust-6")
    assert len(lines) == 2
    assert {(d["event_id"], d["event_type"]) for d in lines} == {("", "payment.succeeded")}
    assert all(d["reason"].endswith("(record too large to keep whole: 1048000 bytes)") for d in lines), lines
    account = dead_letter(f"{tenant}:account:acct-1".encode(), None, [("tenant", tenant.encode())], truncated=True)
    assert await tell(engine, account) == 0, "an account's record names no contact"
