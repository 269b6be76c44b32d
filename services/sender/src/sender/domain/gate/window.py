"""The 24-hour customer-service window (CLOUD-API §6.1): free-form messages only while it is open.

Each inbound message from the contact opens (or refreshes) a 24 h window. Inside it any message
type may go; outside it only approved templates — a free-form send would fail with 131047, so the
gate suppresses it instead of handing it to the provider. Templates are never affected here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sender.domain.gate.verdicts import Suppress, Verdict

RULE = "WINDOW"
WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class WindowMessage:
    """What the rule needs to know about one queued message: whether it is free-form (text, media,
    interactive …) rather than an approved template."""

    free_form: bool


def window_open(last_inbound_at: datetime | None, now: datetime) -> bool:
    """Whether the contact's window is open at ``now``: strictly less than 24 h since their last
    inbound message (``None``: they never wrote, so it is closed). Both datetimes aware."""
    return last_inbound_at is not None and now - last_inbound_at < WINDOW


def free_form(message: WindowMessage, last_inbound_at: datetime | None, now: datetime) -> Verdict | None:
    """The window rule for one message at ``now``.

    ``None`` for a template or while the window is open; ``Suppress("WINDOW", reason)`` for a
    free-form message outside it — the reason says when the window closed, or that there was no
    inbound message at all.
    """
    if not message.free_form or window_open(last_inbound_at, now):
        return None
    if last_inbound_at is None:
        return Suppress(RULE, "free-form message outside the 24 h window: no inbound message from the contact")
    closed_at = (last_inbound_at + WINDOW).astimezone(UTC)
    return Suppress(
        RULE,
        f"free-form message outside the 24 h window: it closed at {closed_at.isoformat()} "
        f"(last inbound message {last_inbound_at.astimezone(UTC).isoformat()})",
    )
