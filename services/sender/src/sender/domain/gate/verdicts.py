"""A gate rule's objection: defer the message to a later instant, or suppress it for good."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias


@dataclass(frozen=True, slots=True)
class Defer:
    """Not now: the message may be sent at ``until`` (UTC, timezone-aware)."""

    until: datetime
    rule: str


@dataclass(frozen=True, slots=True)
class Suppress:
    """Never: the message is dropped; ``reason`` says why in words a person can read."""

    rule: str
    reason: str


Verdict: TypeAlias = Defer | Suppress
