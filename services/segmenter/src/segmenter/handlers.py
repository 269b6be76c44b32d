"""Load → domain → persist: one transaction per consumed batch, and the time-decay refresh (R-G10)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from scrm_common.clock import Clock
from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import Event, PaymentSucceeded
from scrm_common.kafka.consumer import Item
from segmenter.domain.currency import CurrencySettings
from segmenter.domain.features import ContactFeatures
from segmenter.domain.policy import SegmentPolicy
from segmenter.domain.roster import AliasRef, ContactRef, MessageRef, Roster, ignored, messages, wanted
from segmenter.domain.tiers import activity_tier, next_change_at, tags, value_tier

log = logging.getLogger(__name__)

EventRef = tuple[str, str]  # (tenant, event_id)


@dataclass(frozen=True, slots=True)
class ContactRow:
    """A contact as stored: its features and what was derived from them at `computed_at`."""

    tenant: str
    key: str
    features: ContactFeatures
    activity_tier: str
    value_tier: str | None
    tags: tuple[str, ...]
    computed_at: datetime
    refresh_at: datetime | None


@dataclass(slots=True)
class ContactChanges:
    """What one transaction writes."""

    inserted: list[ContactRow] = field(default_factory=list)
    updated: list[ContactRow] = field(default_factory=list)
    deleted: list[ContactRef] = field(default_factory=list)
    aliases_inserted: dict[AliasRef, str] = field(default_factory=dict)
    aliases_updated: dict[AliasRef, str] = field(default_factory=dict)
    # (tenant, old key, new key) of merges and re-keys, in order: stored message recipients follow them
    renamed: list[tuple[str, str, str]] = field(default_factory=list)
    # the contact each platform send went to (idempotency key → contact key), new or changed
    recipients: dict[MessageRef, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredCurrency:
    """A tenant's own currency settings as stored, with when they were last changed."""

    settings: CurrencySettings
    updated_at: datetime


class ConcurrentWrite(Exception):
    """Another instance created the same row first; the batch is retried and then sees it."""


class ContactUnit(Protocol):
    """One transaction against the contact store."""

    async def claim(self, events: Sequence[EventRef]) -> set[EventRef]:
        """Record events in the inbox; return those not recorded before."""

    async def load(self, keys: set[ContactRef], aliases: set[AliasRef]
                   ) -> tuple[dict[ContactRef, ContactFeatures], dict[AliasRef, str]]:
        """Lock and return the contacts (`keys` plus the owners of `aliases`) and their alias owners.

        The aliases returned are those of `aliases` that exist plus every alias of every contact
        returned (a merge or re-key must move them all).
        """

    async def recipients(self, messages: set[MessageRef]) -> dict[MessageRef, str]:
        """Lock and return the contact keys the sends of `messages` (tenant, idempotency key) went to, where known.

        Called before `load`: the contacts returned are to be loaded with the others.
        """

    async def save(self, changes: ContactChanges) -> None:
        """Write the changes; raise ConcurrentWrite when a row to insert exists already.

        `renamed` is applied to the stored message recipients, in order, before `recipients` is written.
        """

    async def due(self, now: datetime, limit: int) -> dict[ContactRef, ContactFeatures]:
        """Lock and return contacts whose derived tiers/tags are stale at `now` (skipping locked ones)."""

    async def currencies(self, tenants: set[str]) -> dict[str, CurrencySettings]:
        """The currency settings of those of `tenants` that have their own."""


class ContactStore(Protocol):
    """Where contacts live."""

    def unit(self) -> AbstractAsyncContextManager[ContactUnit]:
        """A transaction: committed when the block ends normally, rolled back otherwise."""

    async def find(self, tenant: str, ref: str, aliases: Sequence[str]) -> tuple[str, ContactFeatures] | None:
        """The contact with key `ref`, or else the owner of the first of `aliases` that has one."""

    async def currency(self, tenant: str) -> StoredCurrency | None:
        """The tenant's own currency settings, None when it uses the defaults."""

    async def put_currency(self, tenant: str, settings: CurrencySettings, now: datetime) -> None:
        """Store the tenant's currency settings; its customers' value tiers are recomputed soon after `now`."""

    async def ping(self) -> bool:
        """The store answers."""


class SegmenterMetrics:
    """Business counters of the segmenter."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.applied = Counter("scrm_segmenter_events_applied_total", "Events applied to contacts", ["type"],
                               registry=registry)
        self.duplicates = Counter("scrm_segmenter_events_duplicate_total",
                                  "Events skipped because they were applied before", registry=registry)
        self.refreshed = Counter("scrm_segmenter_contacts_refreshed_total",
                                 "Contacts whose tiers and tags were recomputed as time passed",
                                 registry=registry)
        self.skipped = Counter("scrm_segmenter_events_skipped_total",
                               "Events that changed no contact, by type and reason", ["type", "reason"],
                               registry=registry)
        self.merged = Counter("scrm_segmenter_contacts_merged_total",
                              "Contacts found to be one person with another and merged into it", registry=registry)
        self.unconverted = Counter("scrm_segmenter_unconverted_orders_total",
                                   "Paid orders in a currency the tenant has no FX rate for (kept apart)",
                                   ["currency"], registry=registry)


CurrencyOf = Callable[[str], CurrencySettings]


def derive(ref: ContactRef, features: ContactFeatures, now: datetime, policy: SegmentPolicy,
           fx: CurrencySettings) -> ContactRow:
    """The stored row of a contact: its features and their tiers and tags as of `now`."""
    return ContactRow(
        tenant=ref[0], key=ref[1], features=features,
        activity_tier=activity_tier(features, now, policy).value,
        value_tier=value_tier(features, now, policy, fx).value if features.orders else None,
        tags=tags(features, now, policy, fx), computed_at=now,
        refresh_at=next_change_at(features, now, policy))


def changes_between(
    before: tuple[dict[ContactRef, ContactFeatures], dict[AliasRef, str]], after: Roster, now: datetime,
    policy: SegmentPolicy, currency_of: CurrencyOf, recipients: dict[MessageRef, str] | None = None,
) -> ContactChanges:
    """The rows to write so the store holds `after`, given it held `before` (and the message `recipients`)."""
    contacts, aliases = before
    out = ContactChanges()
    for ref, features in after.contacts.items():
        if ref not in contacts:
            out.inserted.append(derive(ref, features, now, policy, currency_of(ref[0])))
        elif contacts[ref] != features:
            out.updated.append(derive(ref, features, now, policy, currency_of(ref[0])))
    out.deleted = [ref for ref in contacts if ref not in after.contacts]
    for ref, owner in after.aliases.items():
        if ref not in aliases:
            out.aliases_inserted[ref] = owner
        elif aliases[ref] != owner:
            out.aliases_updated[ref] = owner
    known = recipients or {}
    out.recipients = {ref: key for ref, key in after.recipients.items() if known.get(ref) != key}
    out.renamed = list(after.renamed)
    return out


async def currency_lookup(unit: ContactUnit, tenants: set[str], default: CurrencySettings) -> CurrencyOf:
    """Each tenant's currency settings: its own when stored, else the installation's default."""
    own = await unit.currencies(tenants) if tenants else {}
    return lambda tenant: own.get(tenant, default)


class ApplyEvents:
    """The consumer's handler: a batch of events becomes contact features, tiers and tags."""

    def __init__(self, *, store: ContactStore, clock: Clock, policy: SegmentPolicy, metrics: SegmenterMetrics,
                 currency: CurrencySettings | None = None) -> None:
        self._store = store
        self._clock = clock
        self._policy = policy
        self._metrics = metrics
        self._currency = currency or CurrencySettings()

    async def __call__(self, items: Sequence[Item[EventRecord]]) -> None:
        records = [item.value for item in items]
        async with self._store.unit() as unit:
            fresh = await unit.claim([(r.tenant, r.event.event_id) for r in records])
            events: list[tuple[str, Event]] = []
            for r in records:
                ref = (r.tenant, r.event.event_id)
                if ref in fresh:
                    fresh.discard(ref)  # the same event twice in one batch applies once
                    events.append((r.tenant, r.event))
            skipped: list[tuple[str, str]] = []
            merged = 0
            unconverted: list[str] = []
            if events:
                keys, aliases = wanted(events)
                sent = messages(events)
                recipients = await unit.recipients(sent) if sent else {}
                before = await unit.load(keys | {(t, k) for (t, _), k in recipients.items()}, aliases)
                currency_of = await currency_lookup(unit, {t for t, _ in events}, self._currency)
                roster = Roster(dict(before[0]), dict(before[1]), dict(recipients))
                for tenant, event in events:
                    if roster.record(tenant, event) is None:
                        reason = ignored(event) or ("no_contact" if event.contact is None else "unknown_contact")
                        skipped.append((event.type, reason))
                    elif isinstance(event, PaymentSucceeded) and \
                            currency_of(tenant).rate(event.data.currency) is None:
                        unconverted.append(event.data.currency)
                merged = len(roster.merged)
                await unit.save(changes_between(before, roster, self._clock.now(), self._policy, currency_of,
                                                recipients))
        for _, event in events:
            self._metrics.applied.labels(event.type).inc()
        for kind, reason in skipped:
            self._metrics.skipped.labels(kind, reason).inc()
        for currency in unconverted:
            self._metrics.unconverted.labels(currency).inc()
        self._metrics.merged.inc(merged)
        self._metrics.duplicates.inc(len(records) - len(events))


class RefreshTiers:
    """R-G10: tiers and tags that time alone changes (a contact turning dormant) are rewritten on time."""

    def __init__(self, *, store: ContactStore, clock: Clock, policy: SegmentPolicy, metrics: SegmenterMetrics,
                 interval_seconds: float, batch: int, currency: CurrencySettings | None = None) -> None:
        self._store = store
        self._clock = clock
        self._policy = policy
        self._metrics = metrics
        self._interval = interval_seconds
        self._batch = batch
        self._currency = currency or CurrencySettings()

    async def refresh_once(self) -> int:
        """Recompute the contacts that are due now (time passed, or the tenant's FX rates changed)."""
        now = self._clock.now()
        async with self._store.unit() as unit:
            due = await unit.due(now, self._batch)
            if due:
                currency_of = await currency_lookup(unit, {t for t, _ in due}, self._currency)
                await unit.save(ContactChanges(
                    updated=[derive(ref, f, now, self._policy, currency_of(ref[0])) for ref, f in due.items()]))
        self._metrics.refreshed.inc(len(due))
        return len(due)

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh until `stop` is set; a full batch is followed at once by the next."""
        while not stop.is_set():
            try:
                done = await self.refresh_once()
            except Exception:
                log.exception("tier refresh failed; retrying after the interval")
                done = 0
            if done < self._batch:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self._interval)
                except TimeoutError:
                    pass
