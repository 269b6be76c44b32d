"""Decisions are data: what the engine decided, for a handler to carry out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from scrm_common.contracts.commands import GatePolicy
from scrm_common.contracts.links import ShortLink

Category = Literal["utility", "marketing", "authentication", "service"]


@dataclass(frozen=True, slots=True)
class Send:
    """Send a template to the contact from WhatsApp account `account_id` (None: the tenant has none for this
    flow; `decide` suppresses such a send); `idempotency_key` makes it happen at most once. `links`: the short
    links its parameters name (`domain.links`), published for ingest with the command when it is sent."""

    flow: str
    idempotency_key: str
    category: Category
    contact_key: str
    to: str
    template: str
    language: str
    parameters: tuple[str, ...]
    account_id: str | None = None
    expires_at: datetime | None = None
    policy: GatePolicy | None = None
    timezone: str | None = None
    preferences: Mapping[str, object] | None = None
    links: tuple[ShortLink, ...] = ()


@dataclass(frozen=True, slots=True)
class Suppress:
    """Nothing is sent, for a recorded reason (duplicate, expired, no phone, opted out …)."""

    flow: str
    reason: str
    contact_key: str
    idempotency_key: str | None = None
    outcome: Literal["suppressed", "expired"] = "suppressed"


@dataclass(frozen=True, slots=True)
class Schedule:
    """Come back to this contact at `due_at` (aware UTC, derived from the triggering event's `occurred_at`):
    the timer `key` (unique per tenant; scheduling an existing pending key moves it) fires once, and the
    flow's `on_timer` decides then, with the contact's state as of then. A timer first seen at or after
    `expires_at` is recorded as expired, never fired late. `payload`: what the flow needs then (JSON
    scalars, lists and objects)."""

    flow: str
    key: str
    contact_key: str
    due_at: datetime
    expires_at: datetime | None = None
    payload: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel the contact's pending timers whose key is `key` or starts with `key` when `prefix`, for a
    recorded reason ("cancelled: purchased")."""

    flow: str
    key: str
    contact_key: str
    reason: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Withdraw the message decided earlier under `idempotency_key` if it has not reached the provider yet
    (a WithdrawMessage command on the commands topic; `account_id` the account it was decided for, when
    known)."""

    flow: str
    idempotency_key: str
    contact_key: str
    reason: str
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class FanOut:
    """Schedule the timer `key_prefix + <person>` for every person of the tenant with `sku` in an open cart
    (R-T6.2: a price drop reaches every such cart), due at `due_at`, expiring at `expires_at`, with `payload`:
    one statement, whatever the number of persons; each person's timer then fires in the timer loop's batches
    (its own transaction per batch, the person's profile re-read there). `reason` is recorded."""

    flow: str
    sku: str
    key_prefix: str
    due_at: datetime
    reason: str
    expires_at: datetime | None = None
    payload: Mapping[str, object] = field(default_factory=dict)

    @property
    def contact_key(self) -> str:
        """What the decision row names instead of a person: the product."""
        return f"sku:{self.sku}"


@dataclass(frozen=True, slots=True)
class Remember:
    """Write `value` (JSON) under `key` of the person's memory slot `slot` (`ContactProfile.state`; None deletes
    the key) in the transaction that carries out the decisions — how a timer's decision leaves a trace the next
    decision reads (R-T6.2: price-drop messages sent per item in 7 days). Recorded as no decision row."""

    flow: str
    contact_key: str
    slot: str
    key: str
    value: Any


Decision = Send | Suppress | Schedule | Cancel | Withdraw | FanOut | Remember
