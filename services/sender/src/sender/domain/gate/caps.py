"""R-S5 frequency caps: at most 3 marketing messages per contact per rolling 7 days, across all
flows and broadcasts; the contact's own stated limit wins when it is lower.

What counts is what was *sent or is in flight* (handed to the provider or on its way), not what was
decided: the caller passes those instants. Instants after ``now`` (in flight with a later stamp,
clock skew between replicas) count too — erring towards fewer messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sender.domain.gate.verdicts import Suppress, Verdict

RULE = "R-S5"
DEFAULT_LIMIT = 3
DEFAULT_WINDOW = timedelta(days=7)


def frequency_cap(
    sent_at: Sequence[datetime],
    now: datetime,
    *,
    limit: int = DEFAULT_LIMIT,
    window: timedelta = DEFAULT_WINDOW,
    contact_limit: int | None = None,
) -> Verdict | None:
    """R-S5 for one more marketing message to a contact at ``now``.

    ``sent_at``: when each marketing message to this contact was sent or put in flight (aware
    datetimes, any order). A message counts when ``sent_at > now - window`` (the window is half-open:
    one sent exactly ``window`` ago no longer counts). The effective cap is ``limit``, or
    ``contact_limit`` when that is given and lower (a stated "at most 2 per week"; a stated limit over
    a different period, "monthly only", is a second call with its own ``window``).

    Returns ``None`` while fewer than the cap were counted, else ``Suppress("R-S5", reason)``
    naming the count, the cap and where the cap came from.
    Raises ``ValueError`` for a naive datetime, a negative limit or a non-positive window.
    """
    if now.tzinfo is None or any(t.tzinfo is None for t in sent_at):
        raise ValueError("frequency cap: datetimes must be timezone-aware")
    if limit < 0 or (contact_limit is not None and contact_limit < 0):
        raise ValueError(f"frequency cap: limits must be >= 0 (limit={limit}, contact_limit={contact_limit})")
    if window <= timedelta(0):
        raise ValueError(f"frequency cap: the window must be positive, got {window}")
    own = contact_limit is not None and contact_limit < limit
    cap = contact_limit if own and contact_limit is not None else limit
    since = now - window
    count = sum(1 for t in sent_at if t > since)
    if count < cap:
        return None
    source = "the contact's own limit" if own else "the limit"
    return Suppress(
        RULE,
        f"{count} marketing messages in the last {_days(window)}; {source} is {cap}",
    )


def _days(window: timedelta) -> str:
    if window % timedelta(days=1) == timedelta(0):
        days = window.days
        return f"{days} day" if days == 1 else f"{days} days"
    return str(window)
