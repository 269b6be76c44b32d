"""Applying a batch of events: load profiles → decide → save decisions and commands, one transaction.

Each batch decides with its tenants' configuration as of the batch (`ConfigSource`: a read-through cache
with a version check, see `configuration`), and applies the accounts it reads (`account.registered` /
`account.removed`) to the tenant-accounts projection first, in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scrm_common.clock import Clock
from scrm_common.contracts import topics
from scrm_common.contracts.commands import SendMessage, TemplateMessage
from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import AccountRegistered, AccountRemoved
from scrm_common.db.outbox import OutboxRow, enqueue
from scrm_common.kafka.consumer import Item
from scrm_common.observability.metrics import LATENCY_BUCKETS
from trigger_engine.adapters.db import DecisionRow, EngineRepository
from trigger_engine.adapters.settings_db import AccountEvent, SettingsRepository
from trigger_engine.domain import ContactProfile, Decision, EngineConfig, Send, Suppress, decide, evolve
from trigger_engine.domain.decide import FLOW_OF_EVENT, absorb, person_key_moves
from trigger_engine.domain.identity import current_numbers, lock_names, resolve, touched_aliases

log = logging.getLogger(__name__)


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter("scrm_trigger_engine_decisions_total", "Decisions taken",
                                 ["flow", "outcome"], registry=registry)
        self.decision_latency = Histogram(
            "scrm_trigger_engine_event_to_decision_seconds", "From an event's ingest to its decision",
            buckets=LATENCY_BUCKETS, registry=registry)


class ConfigSource(Protocol):
    """Where a batch gets its tenants' configuration (`configuration.TenantConfigs`)."""

    async def configs(self, conn: AsyncConnection, tenants: Iterable[str], *,
                      raised: Collection[str] = frozenset()) -> Mapping[str, EngineConfig]:
        """tenant → its configuration as of now, read on the batch's connection; `raised` names the tenants
        whose version the batch's (uncommitted) transaction raised: never cached."""
        ...


class StaticConfigs:
    """A ConfigSource that asks a function (tests, tools)."""

    def __init__(self, config_for: Callable[[str], EngineConfig]) -> None:
        self._config_for = config_for

    async def configs(self, conn: AsyncConnection, tenants: Iterable[str], *,  # noqa: ARG002
                      raised: Collection[str] = frozenset()) -> Mapping[str, EngineConfig]:  # noqa: ARG002
        return {tenant: self._config_for(tenant) for tenant in tenants}


class EventHandler:
    """The consume loop's batch handler for `scrm.events.v1`."""

    def __init__(self, *, engine: AsyncEngine, repository: EngineRepository, clock: Clock,
                 configs: ConfigSource, metrics: EngineMetrics, on_commit: Callable[[], None],
                 settings: SettingsRepository | None = None) -> None:
        self._engine = engine
        self._repo = repository
        self._clock = clock
        self._configs = configs
        self._settings = settings or SettingsRepository()
        self._metrics = metrics
        self._on_commit = on_commit

    async def __call__(self, items: Sequence[Item[EventRecord]]) -> None:
        now = self._clock.now()
        records = [item.value for item in items]
        planned: list[tuple[EventRecord, Decision]] = []
        async with self._engine.begin() as conn:
            new = await self._repo.claim_events(conn, [(r.tenant, r.event.event_id) for r in records])
            accounts = [a for r in records if (r.tenant, r.event.event_id) in new and (a := _account_event(r))]
            raised = {a.tenant for a in accounts}
            if accounts:
                await self._settings.apply_account_events(conn, accounts, now)
                await self._settings.raise_version(conn, raised)
            configs = await self._configs.configs(conn, {r.tenant for r in records}, raised=raised)
            wanted = {(r.tenant, alias) for r in records for alias in touched_aliases(r.event)}
            await self._repo.lock_aliases(conn, {(r.tenant, name) for r in records for name in lock_names(r.event)})
            people = _People(await self._locked_people(conn, wanted))
            profiles = await self._repo.load_profiles(
                conn, people.persons() | {(r.tenant, r.contact_key) for r in records})
            touched: set[tuple[str, str]] = set()
            for record in records:
                key = (record.tenant, record.event.event_id)
                if key not in new:
                    if record.event.type in FLOW_OF_EVENT:
                        planned.append((record, Suppress(FLOW_OF_EVENT[record.event.type],
                                                         "duplicate: event_id already processed",
                                                         people.person_of(record))))
                    continue
                new.discard(key)  # a second copy inside this batch is a duplicate too
                resolution = resolve(record.event, people.of(record.tenant),
                                     partial(_numbers_of, profiles, record.tenant))
                if resolution is None:
                    continue  # no contact: nothing here is about a person
                person = (record.tenant, resolution.person)
                profile = profiles.get(person) or ContactProfile(resolution.person)
                for other in resolution.absorbed:  # one person all along: merge the others in
                    profile = absorb(profile, profiles.pop((record.tenant, other), ContactProfile(other)))
                    people.merge(record.tenant, other, resolution.person)
                    touched.discard((record.tenant, other))
                people.record(record.tenant, resolution.aliases, resolution.person)
                profile = evolve(profile, record.event)
                profiles[person] = profile
                touched.add(person)
                for decision in decide(profile, record.event, now, configs[record.tenant]):
                    planned.append((record, decision))
            # Decisions taken earlier in the batch name the person they merged into, and what was decided
            # once per person for an absorbed person counts for the person it merged into.
            moves = {(tenant, old): new for tenant, absorbed, _ in people.merges
                     for old, new in person_key_moves(tenant, absorbed, people.current(tenant, absorbed)).items()}
            if people.merges:
                planned = [(r, _moved(d, r.tenant, people, moves)) for r, d in planned]
            await self._repo.merge_people(conn, people.merges)
            await self._repo.carry_sends(conn, moves)
            await self._repo.save_aliases(conn, people.changed, now)
            await self._repo.save_profiles(conn, {k: profiles[k] for k in touched}, now)

            sends = [(r, d) for r, d in planned if isinstance(d, Send)]
            reserved = await self._repo.reserve_sends(
                conn, [(r.tenant, d.idempotency_key, d.flow, d.contact_key, r.event.event_id) for r, d in sends], now)
            rows: list[DecisionRow] = []
            outbox: list[OutboxRow] = []
            for record, decision in planned:
                outcome, reason = "suppressed", None
                if isinstance(decision, Send):
                    if (record.tenant, decision.idempotency_key) in reserved:
                        reserved.discard((record.tenant, decision.idempotency_key))
                        outcome = "send"
                        outbox.append(self._command(record, decision, now))
                    else:
                        reason = "duplicate: a message was already decided for this key"
                else:
                    reason, outcome = decision.reason, decision.outcome
                rows.append(DecisionRow(record.tenant, record.event.event_id, record.event.type,
                                        decision.contact_key, decision.flow, outcome, reason,
                                        decision.idempotency_key, now))
            await self._repo.record_decisions(conn, rows)
            await enqueue(conn, outbox)
        for record, row in zip((r for r, _ in planned), rows, strict=True):
            self._metrics.decisions.labels(row.flow, row.outcome).inc()
            if row.outcome == "send" and record.ingested_at is not None:
                self._metrics.decision_latency.observe(max(0.0, (now - record.ingested_at).total_seconds()))
        if outbox:
            self._on_commit()

    async def _locked_people(self, conn: AsyncConnection, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The persons of `wanted` (whose alias locks the batch holds), each person locked too.

        A merge rewrites every alias of the person it absorbs, also aliases this batch did not lock;
        it holds the absorbed person's lock while it does. So the batch locks the persons it found,
        then reads again: a person merged away meanwhile is replaced by the one it merged into, which
        is locked in turn. Two extra round trips when the batch names anyone already known.
        """
        known = await self._repo.load_aliases(conn, wanted)
        locked: set[tuple[str, str]] = set()
        while persons := {(tenant, person) for (tenant, _), person in known.items()} - locked:
            await self._repo.lock_persons(conn, persons)
            locked |= persons
            known = await self._repo.load_aliases(conn, wanted)
        return known

    def _command(self, record: EventRecord, send: Send, now: datetime) -> OutboxRow:
        assert send.account_id is not None  # decide() never sends without an account
        command = SendMessage(
            idempotency_key=send.idempotency_key, tenant=record.tenant, account_id=send.account_id,
            flow=send.flow, category=send.category, contact_key=send.contact_key, to=send.to,
            template=TemplateMessage(name=send.template, language=send.language, parameters=list(send.parameters)),
            event_id=record.event.event_id, event_occurred_at=record.event.occurred_at,
            event_ingested_at=record.ingested_at, decided_at=now, correlation_id=record.correlation_id,
        )
        headers = [("tenant", record.tenant)]
        if record.correlation_id:
            headers.append(("correlation_id", record.correlation_id))
        return OutboxRow(topics.SEND_COMMANDS, command.kafka_key.encode(),
                         command.model_dump_json(exclude_none=True).encode(), headers)


def _account_event(record: EventRecord) -> AccountEvent | None:
    """The account event a record is, for the tenant-accounts projection; None for any other event."""
    event = record.event
    if isinstance(event, AccountRegistered | AccountRemoved):
        data = event.data
        removed = isinstance(event, AccountRemoved)
        at = event.occurred_at if removed or data.registered_at is None else data.registered_at
        return AccountEvent(record.tenant, data.account_id, removed, at, data.waba_id, data.display_name,
                            event.occurred_at)
    return None


def _moved(decision: Decision, tenant: str, people: _People, moves: dict[tuple[str, str], str]) -> Decision:
    """`decision` naming the person its person merged into, under that person's once-per-person key."""
    decision = replace(decision, contact_key=people.current(tenant, decision.contact_key))
    key = decision.idempotency_key
    if key is not None and (tenant, key) in moves:
        decision = replace(decision, idempotency_key=moves[(tenant, key)])
    return decision


def _numbers_of(profiles: dict[tuple[str, str], ContactProfile], tenant: str, person: str) -> frozenset[str]:
    """The match keys of `person`'s current numbers as the batch knows them (empty when unknown)."""
    profile = profiles.get((tenant, person))
    return current_numbers(profile.phone, profile.wa_id) if profile is not None else frozenset()


class _People:
    """The batch's view of who is who: (tenant, alias) → person, as loaded and as the batch changes it."""

    def __init__(self, known: dict[tuple[str, str], str]) -> None:
        self._by_tenant: dict[str, dict[str, str]] = {}
        for (tenant, alias), person in known.items():
            self._by_tenant.setdefault(tenant, {})[alias] = person
        self.changed: dict[tuple[str, str], str] = {}
        self.merges: list[tuple[str, str, str]] = []

    def persons(self) -> set[tuple[str, str]]:
        """Every (tenant, person) an alias of the batch names."""
        return {(tenant, person) for tenant, aliases in self._by_tenant.items() for person in aliases.values()}

    def of(self, tenant: str) -> dict[str, str]:
        """alias → person for one tenant."""
        return self._by_tenant.setdefault(tenant, {})

    def person_of(self, record: EventRecord) -> str:
        """The person a (duplicate) event names, without changing anything; its own key if unknown."""
        resolution = resolve(record.event, self.of(record.tenant))
        return resolution.person if resolution is not None else record.contact_key

    def record(self, tenant: str, aliases: Sequence[str], person: str) -> None:
        """`aliases` are `person`'s from now on."""
        known = self.of(tenant)
        for alias in aliases:
            if known.get(alias) != person:
                known[alias] = person
                self.changed[(tenant, alias)] = person

    def current(self, tenant: str, person: str) -> str:
        """`person`'s key after the batch's merges."""
        for merged_tenant, absorbed, into in self.merges:
            if merged_tenant == tenant and absorbed == person:
                person = into
        return person

    def merge(self, tenant: str, absorbed: str, person: str) -> None:
        """`absorbed` was `person` all along: its aliases are `person`'s."""
        self.merges.append((tenant, absorbed, person))
        known = self.of(tenant)
        for alias, owner in known.items():
            if owner == absorbed:
                known[alias] = person
        for key, owner in self.changed.items():
            if owner == absorbed:
                self.changed[key] = person
