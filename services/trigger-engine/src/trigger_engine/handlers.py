"""Applying a batch of events: load profiles → decide → save decisions, timers and commands, one transaction.

Each batch decides with its tenants' configuration as of the batch (`ConfigSource`: a read-through cache
with a version check, see `configuration`), and applies the accounts it reads (`account.registered` /
`account.removed`) to the tenant-accounts projection first, in the same transaction. `DecisionWriter` carries
out every kind of decision (send, suppress, schedule, cancel, withdraw) — for event batches here and for
fired timers in `trigger_engine.timers`, the very same code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scrm_common.clock import Clock
from scrm_common.contracts import topics
from scrm_common.contracts.commands import SendMessage, TemplateMessage, WithdrawMessage
from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import AccountRegistered, AccountRemoved, Preferences, ProductPriceChanged
from scrm_common.contracts.links import ShortLink
from scrm_common.db.outbox import OutboxRow, enqueue
from scrm_common.kafka.consumer import Item
from scrm_common.observability.metrics import LATENCY_BUCKETS
from trigger_engine.adapters.db import DecisionRow, EngineRepository
from trigger_engine.adapters.settings_db import AccountEvent, SettingsRepository
from trigger_engine.adapters.timers import CancelRow, TimerRepository, TimerRow
from trigger_engine.domain import ContactProfile, Decision, EngineConfig, Send, Suppress, decide, evolve
from trigger_engine.domain.carts import open_cart_skus
from trigger_engine.domain.decide import (
    FLOW_OF_EVENT,
    absorb,
    decide_without_contact,
    merged_withdrawals,
    person_key_moves,
    person_key_owner,
)
from trigger_engine.domain.decisions import Cancel, FanOut, Remember, Schedule, Withdraw
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


@dataclass(frozen=True, slots=True)
class Cause:
    """What a decision answers, as its decision row and command name it: an event of `tenant` (`event_id`,
    `event_type`, `occurred_at` and `ingested_at` aware UTC, `correlation_id`), or a timer firing (the event
    that scheduled it, `event_type` "timer")."""

    tenant: str
    event_id: str
    event_type: str
    occurred_at: datetime
    ingested_at: datetime | None = None
    correlation_id: str | None = None

    @classmethod
    def of(cls, record: EventRecord) -> Cause:
        """The cause of an event's decisions."""
        return cls(record.tenant, record.event.event_id, record.event.type, record.event.occurred_at,
                   record.ingested_at, record.correlation_id)


TIMER_EVENT_TYPE = "timer"  # the decision rows of a timer that fired (or expired) name this as their event type


@dataclass(slots=True)
class Applied:
    """What `DecisionWriter.apply` wrote: one decision row per decision (with its cause), the outbox rows, and
    the earliest due time of the timers it scheduled (None: none)."""

    rows: list[tuple[Cause, DecisionRow]] = field(default_factory=list)
    outbox: list[OutboxRow] = field(default_factory=list)
    earliest_due: datetime | None = None

    def count(self, metrics: EngineMetrics, now: datetime) -> None:
        """Count the decisions (`scrm_trigger_engine_decisions_total{flow,outcome}`) and, for each send of an
        ingested event, its event-to-decision latency in seconds."""
        for cause, row in self.rows:
            metrics.decisions.labels(row.flow, row.outcome).inc()
            if row.outcome == "send" and cause.ingested_at is not None and cause.event_type != TIMER_EVENT_TYPE:
                metrics.decision_latency.observe(max(0.0, (now - cause.ingested_at).total_seconds()))


class DecisionWriter:
    """Carries out decisions in the caller's transaction — the event handler's and the timer loop's alike.

    Every decision becomes one decision row (outcome and reason):
    - `Send` → a `SendMessage` outbox row (with the decision's `expires_at`, `policy`, `timezone`) on
      `scrm.send-commands.v1` when its idempotency key is reserved now ("send"); else "suppressed" as a
      duplicate.
    - `Suppress` → its own outcome ("suppressed" or "expired") and reason.
    - `Schedule` → a pending timer under its key, re-armed if the key was kept before whatever its state
      ("scheduled", reason "due at <ISO UTC>").
    - `Cancel` → the person's pending timers with that key (or key prefix) cancelled ("cancelled", its reason);
      a prefix cancel records one row per timer it cancelled, under the timer's key (a keyless row when none).
    - `Withdraw` → a `WithdrawMessage` outbox row on the commands topic, keyed like the send it withdraws
      ("withdrawn", its reason). A withdrawal of a person's once-per-person message (R-T1 welcome) withdraws
      those of the persons merged into them too, one command and decision row per key, right after it
      (`merged_withdrawals`: an absorbed person's sends are the person's since the merge).
    Schedules and cancels take effect in decision order (a schedule after a cancel of its key stays pending).
    Schedule/Cancel rows carry their timer key as `idempotency_key`. Issue 8 item 1; SPEC R-T1.1 (expiry).
    """

    def __init__(self, repository: EngineRepository, timers: TimerRepository) -> None:
        self._repo = repository
        self._timers = timers

    async def apply(self, conn: AsyncConnection, planned: Sequence[tuple[Cause, Decision]], now: datetime) -> Applied:
        """Write `planned` (in order) on `conn`; `now` (aware UTC) is the decision time. Returns what it wrote;
        the caller enqueued nothing itself and commits."""
        planned = await self._with_merged_withdrawals(conn, planned)
        sends = [(c, d) for c, d in planned if isinstance(d, Send)]
        reserved = await self._repo.reserve_sends(
            conn, [(c.tenant, d.idempotency_key, d.flow, d.contact_key, c.event_id) for c, d in sends], now)
        applied = Applied()
        cancelled = await self._timer_changes(conn, planned, now)
        remembered = [(c.tenant, d.contact_key, d.slot, d.key, d.value) for c, d in planned if isinstance(d, Remember)]
        await self._repo.remember(conn, remembered)
        for cause, decision in planned:
            outcome, reason, key = "suppressed", None, None
            if isinstance(decision, Remember):
                continue  # memory, not a decision of its own
            if isinstance(decision, Send):
                key = decision.idempotency_key
                if (cause.tenant, key) in reserved:
                    reserved.discard((cause.tenant, key))
                    outcome = "send"
                    applied.outbox.append(_send_command(cause, decision, now))
                    applied.outbox.extend(_link_record(cause, link) for link in decision.links)
                else:
                    reason = "duplicate: a message was already decided for this key"
            elif isinstance(decision, Suppress):
                outcome, reason, key = decision.outcome, decision.reason, decision.idempotency_key
            elif isinstance(decision, Schedule):
                outcome, reason, key = "scheduled", f"due at {_iso(decision.due_at)}", decision.key
                if applied.earliest_due is None or decision.due_at < applied.earliest_due:
                    applied.earliest_due = decision.due_at
            elif isinstance(decision, Cancel):
                outcome, reason, key = "cancelled", decision.reason, decision.key
                if decision.prefix:
                    # a prefix names no message: one row per timer it cancelled (each stage of the cart is told
                    # stopped in the story), or one line without a key when it cancelled none
                    named = CancelRow(cause.tenant, decision.contact_key, decision.key, True, decision.reason)
                    keys = cancelled.pop(named, [])
                    for each in keys[:-1]:
                        applied.rows.append((cause, DecisionRow(cause.tenant, cause.event_id, cause.event_type,
                                                                decision.contact_key, decision.flow, outcome,
                                                                reason, each, now)))
                    key = keys[-1] if keys else None
            elif isinstance(decision, FanOut):
                reached = await self._repo.fan_out(
                    conn, tenant=cause.tenant, sku=decision.sku, key_prefix=decision.key_prefix, flow=decision.flow,
                    event_id=cause.event_id, event_occurred_at=cause.occurred_at,
                    correlation_id=cause.correlation_id, due_at=decision.due_at, expires_at=decision.expires_at,
                    payload=decision.payload)
                outcome, reason, key = "scheduled", f"{decision.reason}: {reached} contact(s)", decision.key_prefix
                if reached and (applied.earliest_due is None or decision.due_at < applied.earliest_due):
                    applied.earliest_due = decision.due_at
            else:
                outcome, reason, key = "withdrawn", decision.reason, decision.idempotency_key
                applied.outbox.append(_withdraw_command(cause, decision, now))
            applied.rows.append((cause, DecisionRow(cause.tenant, cause.event_id, cause.event_type,
                                                    decision.contact_key, decision.flow, outcome, reason, key, now)))
        await self._repo.record_decisions(conn, [row for _, row in applied.rows])
        await enqueue(conn, applied.outbox)
        return applied

    async def _with_merged_withdrawals(self, conn: AsyncConnection, planned: Sequence[tuple[Cause, Decision]]
                                       ) -> Sequence[tuple[Cause, Decision]]:
        """`planned` with, after each withdrawal of a once-per-person message, the withdrawals of the same flow's
        messages reserved for its person under merged persons' keys (`merged_withdrawals`). One statement when
        some withdrawal is of a once-per-person key, none otherwise."""
        own = [(c, d) for c, d in planned if isinstance(d, Withdraw)
               and person_key_owner(c.tenant, d.idempotency_key) is not None]
        if not own:
            return planned
        reserved = await self._repo.reserved_keys(conn, {(c.tenant, d.contact_key, d.flow) for c, d in own})
        expanded: list[tuple[Cause, Decision]] = []
        for cause, decision in planned:
            expanded.append((cause, decision))
            if isinstance(decision, Withdraw):
                keys = reserved.get((cause.tenant, decision.contact_key, decision.flow), ())
                expanded += [(cause, w) for w in merged_withdrawals(cause.tenant, decision, keys)]
        return expanded

    async def _timer_changes(self, conn: AsyncConnection, planned: Sequence[tuple[Cause, Decision]],
                             now: datetime) -> dict[CancelRow, list[str]]:
        """Schedules and cancels, in decision order: each run of one kind is one statement. Returns the keys of the
        timers each cancel row cancelled (sorted)."""
        schedules: list[TimerRow] = []
        cancels: list[CancelRow] = []
        cancelled: dict[CancelRow, list[str]] = {}

        async def cancel(rows: list[CancelRow]) -> None:
            for row, key in await self._timers.cancel(conn, rows, now):
                cancelled.setdefault(row, []).append(key)

        for cause, decision in planned:
            if isinstance(decision, Schedule):
                if cancels:
                    await cancel(cancels)
                    cancels = []
                schedules.append(TimerRow(cause.tenant, decision.key, decision.flow, decision.contact_key,
                                          cause.event_id, decision.due_at, decision.expires_at, decision.payload,
                                          cause.occurred_at, cause.correlation_id))
            elif isinstance(decision, Cancel):
                if schedules:
                    await self._timers.schedule(conn, schedules, now)
                    schedules = []
                cancels.append(CancelRow(cause.tenant, decision.contact_key, decision.key, decision.prefix,
                                         decision.reason))
        await self._timers.schedule(conn, schedules, now)
        await cancel(cancels)
        return {row: sorted(keys) for row, keys in cancelled.items()}


class EventHandler:
    """The consume loop's batch handler for `scrm.events.v1`.

    `on_commit()` is called after a batch committed outbox rows (wakes the relay); `on_scheduled(due_at)`
    after a batch committed timers, with the earliest due time among them (aware UTC; wakes the timer loop
    when that is now or soon: an event dated 31 minutes ago with a 30-minute timer fires at once).
    """

    def __init__(self, *, engine: AsyncEngine, repository: EngineRepository, clock: Clock,
                 configs: ConfigSource, metrics: EngineMetrics, on_commit: Callable[[], None],
                 settings: SettingsRepository | None = None, timers: TimerRepository | None = None,
                 on_scheduled: Callable[[datetime], None] = lambda _due: None) -> None:
        self._engine = engine
        self._repo = repository
        self._timers = timers or TimerRepository()
        self._writer = DecisionWriter(repository, self._timers)
        self._on_scheduled = on_scheduled
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
                if isinstance(record.event, ProductPriceChanged):  # about a product, whoever it names (R-T6.2)
                    planned += [(record, d) for d in decide_without_contact(record.event, now, configs[record.tenant])]
                    continue
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
            await self._repo.save_cart_skus(conn, {k: open_cart_skus(profiles[k]) for k in touched})
            await self._timers.merge_people(conn, people.merges)
            applied = await self._writer.apply(conn, [(Cause.of(r), d) for r, d in planned], now)
        applied.count(self._metrics, now)
        if applied.outbox:
            self._on_commit()
        if applied.earliest_due is not None:
            self._on_scheduled(applied.earliest_due)

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



def _iso(at: datetime) -> str:
    return at.isoformat()


def _headers(cause: Cause) -> list[tuple[str, str]]:
    headers = [("tenant", cause.tenant)]
    if cause.correlation_id:
        headers.append(("correlation_id", cause.correlation_id))
    return headers


def _send_command(cause: Cause, send: Send, now: datetime) -> OutboxRow:
    """The SendMessage of a reserved send, as an outbox row keyed by account (with the person's stated
    preferences as the contract's `Preferences`, see `_preferences`)."""
    assert send.account_id is not None  # decide() and on_timer() never send without an account
    command = SendMessage(
        idempotency_key=send.idempotency_key, tenant=cause.tenant, account_id=send.account_id,
        flow=send.flow, category=send.category, contact_key=send.contact_key, to=send.to,
        template=TemplateMessage(name=send.template, language=send.language, parameters=list(send.parameters)),
        event_id=cause.event_id, event_occurred_at=cause.occurred_at, event_ingested_at=cause.ingested_at,
        decided_at=now, correlation_id=cause.correlation_id, expires_at=send.expires_at, timezone=send.timezone,
        preferences=_preferences(send), policy=send.policy,
    )
    return OutboxRow(topics.SEND_COMMANDS, command.kafka_key.encode(), _send_json(command), _headers(cause))


def _preferences(send: Send) -> Preferences | None:
    """The person's stated preferences for the send gate (R-G4, R-S5): the profile's keys as the contract's
    `Preferences` (the gate honours the keys it knows; the others ride along). None when none were stated; a
    stored value the contract no longer accepts (recorded under an older contract) leaves out only that key."""
    if not send.preferences:
        return None
    stated = dict(send.preferences)
    try:
        return Preferences.model_validate(stated)
    except ValidationError as exc:
        bad = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        log.warning("stored preferences of %s not accepted by the contract: %s left out", send.contact_key,
                    ", ".join(sorted(bad)) or "all")
        try:
            return Preferences.model_validate({k: v for k, v in stated.items() if k not in bad}) if bad else None
        except ValidationError:
            return None


def _send_json(command: SendMessage) -> bytes:
    """The command's JSON without null fields (the contract gives no null field a meaning of its own)."""
    return command.model_dump_json(exclude_none=True).encode()


def _withdraw_command(cause: Cause, withdraw: Withdraw, now: datetime) -> OutboxRow:
    """The WithdrawMessage of a withdraw decision, keyed like the send it withdraws."""
    command = WithdrawMessage(
        action="withdraw", idempotency_key=withdraw.idempotency_key, tenant=cause.tenant,
        account_id=withdraw.account_id, contact_key=withdraw.contact_key, flow=withdraw.flow,
        reason=withdraw.reason, decided_at=now, correlation_id=cause.correlation_id)
    return OutboxRow(topics.SEND_COMMANDS, command.kafka_key.encode(),
                     command.model_dump_json(exclude_none=True).encode(), _headers(cause))


def _link_record(cause: Cause, link: ShortLink) -> OutboxRow:
    """A short link of a sent message, for ingest (`scrm.links.v1`, keyed `<tenant>:<code>`)."""
    return OutboxRow(topics.LINKS, link.kafka_key.encode(), link.model_dump_json(exclude_none=True).encode(),
                     _headers(cause))


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
    """`decision` naming the person its person merged into, under that person's once-per-person key (a
    Schedule's or Cancel's timer key moves like an idempotency key)."""
    if isinstance(decision, FanOut):
        return decision  # about a product, not a person
    decision = replace(decision, contact_key=people.current(tenant, decision.contact_key))
    if isinstance(decision, Schedule | Cancel):
        if (tenant, decision.key) in moves:
            decision = replace(decision, key=moves[(tenant, decision.key)])
        return decision
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
