"""Decisions are data: what the engine decided, for a handler to carry out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Category = Literal["utility", "marketing", "authentication", "service"]


@dataclass(frozen=True, slots=True)
class Send:
    """Send a template to the contact from WhatsApp account `account_id` (None: the tenant has none for this
    flow; `decide` suppresses such a send); `idempotency_key` makes it happen at most once."""

    flow: str
    idempotency_key: str
    category: Category
    contact_key: str
    to: str
    template: str
    language: str
    parameters: tuple[str, ...]
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class Suppress:
    """Nothing is sent, for a recorded reason (duplicate, expired, no phone, opted out …)."""

    flow: str
    reason: str
    contact_key: str
    idempotency_key: str | None = None
    outcome: Literal["suppressed", "expired"] = "suppressed"


Decision = Send | Suppress
