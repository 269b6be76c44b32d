"""The send gate: one answer to "may this queued message go now?", whatever produced it.

`gate(message, contact, history, now)` returns `DISPATCH`, `Defer(until, rule)` or `Suppress(rule,
reason)`. The rules run in this order (the first objection wins); each is one function of its own
module, its numbers a setting of the message's `GatePolicy` (the tenant's and the flow's, stamped on
the command by whoever decided it):

| # | rule        | applies to            | verdict                                                   |
|---|-------------|-----------------------|-----------------------------------------------------------|
| 0 | WITHDRAWN   | every message         | Suppress when the deciding service withdrew it             |
| 1 | EXPIRED     | every message         | Suppress at or after `expires_at` (R-T1.1)                 |
| 2 | R-S7        | every message         | Suppress while the number is marked invalid                |
| 3 | WINDOW      | free-form messages    | Suppress outside the 24 h window (CLOUD-API §6.1, 131047)  |
| 4 | R-S6        | marketing             | Suppress while the contact opted out                       |
| 5 | META-131049 | marketing             | Defer until Meta's per-user marketing limit has passed;    |
|   |             |                       | then one at a time until one is delivered (below)          |
| 6 | R-T4.5/R-T6.3 | marketing of a fatigue kind | Suppress while paused, or when over the threshold |
| 7 | R-S5        | marketing             | Suppress over the cap (see below)                          |
| 8 | R-S4        | marketing, not exempt | Defer to the next allowed local instant (below)            |

META-131049 "for 24 h, then once" (issue 8, CLOUD-API §6.5): after the block ends (`ContactState.once_since`,
see `once_since`) at most one marketing message is in flight to the contact until one is reported delivered;
the others wait (Defer META-131049) until `ONCE_WAIT` after the latest one in flight — the dispatcher looks at
them again as soon as that one settles.

R-S5 counts the policy's cap (3 in 7 days), the contact's own weekly and monthly limits, and
"passive" as 1 a month (their own monthly limit when lower). R-S4 uses the contact's preferred hours
inside the allowed ones when stated — wherever the two overlap, either crossing midnight, possibly two
pieces a day; when they do not overlap, the allowed hours.

Helpers for the dispatcher's pass: `deferral_reason` (the words of a deferral), `contact_zone` (which
zone R-S4 reads), `stated_preferences` (R-G4 preferences as the gate takes them), `reply_delays`
(R-T4.5's delays from the send and inbound history).

Any deferral that would reach the message's expiry becomes `Suppress(EXPIRED)`. R-S3 pacing (per
account, not per message) and the account's restrictions stay beside the gate, in `pacing` and
`restrictions`: they say how many may go now, the gate says which may go at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Final, TypeAlias
from zoneinfo import ZoneInfo

from scrm_common.contracts.commands import GatePolicy, MessageCategory
from sender.domain.gate import caps, fatigue, quiet_hours, window
from sender.domain.gate.verdicts import Defer, Suppress

EXPIRED: Final = "EXPIRED"
INVALID_NUMBER: Final = "R-S7"
OPT_OUT: Final = "R-S6"
META_MARKETING_LIMIT: Final = "META-131049"
WITHDRAWN: Final = "WITHDRAWN"
MONTH: Final = timedelta(days=30)
# After Meta's 131049 block: how long a marketing message in flight without a delivery report keeps the contact's
# other marketing waiting (its settlement wakes them sooner).
ONCE_WAIT: Final = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Dispatch:
    """The message may be handed to the provider now (pacing permitting)."""


DISPATCH: Final = Dispatch()
GateVerdict: TypeAlias = Dispatch | Defer | Suppress


@dataclass(frozen=True, slots=True)
class GateMessage:
    """One queued message as the gate sees it. `free_form`: not a template (text, media …);
    `expires_at`: aware UTC instant from which it is not sent (None: never expires); `withdrawn`: the reason of
    the deciding service's withdrawal (a `withdrawals` tombstone), None when not withdrawn."""

    flow: str
    category: MessageCategory
    free_form: bool = False
    expires_at: datetime | None = None
    policy: GatePolicy = field(default_factory=GatePolicy)
    withdrawn: str | None = None


@dataclass(frozen=True, slots=True)
class ContactState:
    """What the sender knows about the contact (its reachability record), as of `now`.

    `zone`: their own IANA zone, else their number's country's. `max_per_week` / `max_per_month` /
    `preferred_hours` (local start, end) / `passive`: their stated preferences (R-G4). `blocked_until`:
    Meta's 131049 per-user marketing limit; `once_since`: that block ended at this instant and no marketing
    message claimed since was reported delivered ("then once", see `once_since`; None: not in that state).
    `invalid_until`: the number is marked invalid (R-S7). `paused_until`: fatigue rule → end of its pause.
    """

    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    opted_out: bool = False
    last_inbound_at: datetime | None = None
    max_per_week: int | None = None
    max_per_month: int | None = None
    preferred_hours: tuple[time, time] | None = None
    passive: bool = False
    blocked_until: datetime | None = None
    once_since: datetime | None = None
    invalid_until: datetime | None = None
    paused_until: Mapping[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class History:
    """The contact's send history the gate counts (aware UTC instants).

    `marketing_at`: when each marketing message to them was sent or put in flight (at least the
    last 30 days, and as far back as the policy's R-S5 window). For the message's fatigue kind: `kind_at`
    when each message of that kind was sent (30 days), `delivered` / `read` how many of their messages were
    delivered / read (R-T6.3's read rate), `reply_delays` how long they took to answer those of that kind they
    answered (R-T4.5).
    """

    marketing_at: tuple[datetime, ...] = ()
    kind_at: tuple[datetime, ...] = ()
    delivered: int = 0
    read: int = 0
    reply_delays: tuple[timedelta, ...] = ()


def gate(message: GateMessage, contact: ContactState, history: History, now: datetime) -> GateVerdict:
    """The verdict for `message` at `now` (aware): see the module's table for the rules and their order.

    A fatigue `Suppress` (rule R-T4.5 / R-T6.3) over the threshold means the caller pauses that kind
    for the contact for `policy.fatigue.pause_days` (see `fatigue_pause`).
    """
    if message.withdrawn is not None:
        return Suppress(WITHDRAWN, message.withdrawn)
    if message.expires_at is not None and now >= message.expires_at:
        return Suppress(EXPIRED, f"expired at {message.expires_at.astimezone(UTC).isoformat()}")
    if contact.invalid_until is not None and contact.invalid_until > now:
        return Suppress(INVALID_NUMBER, "the number is marked invalid (R-S7) until "
                                        f"{contact.invalid_until.astimezone(UTC).isoformat()}")
    if (found := window.free_form(window.WindowMessage(message.free_form), contact.last_inbound_at, now)) is not None:
        return found
    if message.category != "marketing":
        return DISPATCH
    if contact.opted_out:
        return Suppress(OPT_OUT, "the contact opted out of marketing messages")
    if contact.blocked_until is not None and contact.blocked_until > now:
        return _deferred(Defer(contact.blocked_until, META_MARKETING_LIMIT), message)
    if contact.once_since is not None:
        pending = [at for at in history.marketing_at if at >= contact.once_since and at + ONCE_WAIT > now]
        if pending:
            return _deferred(Defer(max(pending) + ONCE_WAIT, META_MARKETING_LIMIT), message)
    if (found := _fatigue(message, contact, history, now)) is not None:
        return found
    if (found := _caps(message.policy, contact, history, now)) is not None:
        return found
    if (windows := _windows(message.policy, contact)) is not None:
        found = _quiet(message, contact, windows, now)
        if found is not None:
            return found
    return DISPATCH


def once_since(blocked_until: datetime | None, marketing: Sequence[tuple[datetime, bool]], now: datetime,
               known_since: datetime) -> datetime | None:
    """`ContactState.once_since` for 131049's "then once": `blocked_until` (the end of Meta's block) when it has
    passed at `now` and none of the contact's marketing messages claimed since then was reported delivered.

    `marketing`: (claimed at, delivered or read) of each marketing message sent or in flight, known from
    `known_since` on (a block that ended before that is over: None). Aware UTC instants.
    """
    if blocked_until is None or blocked_until > now or blocked_until < known_since:
        return None
    if any(delivered and at >= blocked_until for at, delivered in marketing):
        return None
    return blocked_until


def fatigue_pause(message: GateMessage, verdict: GateVerdict, now: datetime) -> datetime | None:
    """When `verdict` is a fatigue suppression over the threshold, the end of the pause to store."""
    policy = message.policy.fatigue
    if policy is None or not isinstance(verdict, Suppress) or verdict.rule != policy.rule:
        return None
    if verdict.reason.startswith("paused"):
        return None  # already paused: the stored pause stands
    return now + timedelta(days=policy.pause_days)


def deferral_reason(verdict: Defer, message: GateMessage, contact: ContactState) -> str:
    """The words a person reads for a deferral (send log `error_reason`, the `deferred` status): the rule,
    for R-S4 the allowed local hours and the zone, and the instant in the contact's local time and in UTC —
    e.g. "quiet hours 08:00–22:00 Europe/Berlin: deferred until 2026-12-02 08:00 CET (07:00Z)"."""
    local = verdict.until.astimezone(contact.zone)
    utc = verdict.until.astimezone(UTC)
    same_day = utc.date() == local.date()
    when = f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({utc:%H:%M}Z)" if same_day else \
        f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({utc:%Y-%m-%d %H:%M}Z)"
    if verdict.rule == quiet_hours.RULE:
        windows = _windows(message.policy, contact) or []
        span = "".join(f"{', ' if i else ''}{w.start:%H:%M}–{w.end:%H:%M}" for i, w in enumerate(windows))
        span += " " if span else ""
        return f"quiet hours {span}{contact.zone.key}: deferred until {when}"
    if verdict.rule == META_MARKETING_LIMIT and contact.once_since is not None:
        return ("Meta's per-user marketing limit (131049) has passed: one marketing message at a time until one "
                f"is delivered; looked at again when the one in flight settles, at the latest {when}")
    if verdict.rule == META_MARKETING_LIMIT:
        return f"Meta's per-user marketing limit (131049): no marketing before {when}"
    return f"{verdict.rule}: deferred until {when}"


def contact_zone(own: str | None, command: str | None, derived: str | None, number: str | None) -> ZoneInfo:
    """The zone R-S4 reads the contact's local time in: their own zone as the sender's record has it, else the
    one the deciding service stamped on the command, else the record's zone derived from the number, else the
    number's country's main zone (`zone.number_zone`, as the record derives it), else UTC. A name that is no
    IANA zone is skipped (never raises)."""
    for name in (own, command, derived, number):
        if name:
            try:
                return ZoneInfo(name)
            except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError; a directory an OSError
                continue
    return ZoneInfo("UTC")


def stated_preferences(raw: Mapping[str, object]) -> tuple[int | None, int | None, tuple[time, time] | None, bool]:
    """The contact's stated preferences (R-G4, as `ContactData.preferences` validated them at ingest):
    (max_promotions_per_week, max_promotions_per_month, preferred_hours as local (start, end), passive).
    An end of `24:00` (allowed by the contract) is midnight: `18:00-24:00` → (18:00, 00:00). A value of the
    wrong shape counts as not stated (never raises)."""
    week, month = raw.get("max_promotions_per_week"), raw.get("max_promotions_per_month")
    hours: tuple[time, time] | None = None
    text = raw.get("preferred_hours")
    if isinstance(text, str) and "-" in text:
        try:
            start, end = (_clock_of(part) for part in text.split("-", 1))
            hours = (start, end) if start != end else None
        except ValueError:
            hours = None
    return (week if isinstance(week, int) and not isinstance(week, bool) and week >= 0 else None,
            month if isinstance(month, int) and not isinstance(month, bool) and month >= 0 else None,
            hours, raw.get("passive") is True)


def _clock_of(text: str) -> time:
    """A local `HH:MM` of preferred hours; `24:00` (the contract's end of day) is midnight. Raises ValueError."""
    text = text.strip()
    return time(0) if text in ("24:00", "24:00:00") else time.fromisoformat(text)


def reply_delays(sent_at: Sequence[datetime], inbound_at: Sequence[datetime]) -> tuple[timedelta, ...]:
    """R-T4.5's reply delays: for each message of the kind sent at `sent_at[i]` (ascending), the time until
    the contact's first inbound message after it and before the next one of the kind (a reply answers the
    latest message); messages never answered are left out. Aware UTC instants, any order of `inbound_at`."""
    sends = sorted(sent_at)
    inbound = sorted(inbound_at)
    delays: list[timedelta] = []
    for i, at in enumerate(sends):
        until = sends[i + 1] if i + 1 < len(sends) else None
        first = next((r for r in inbound if r > at), None)
        if first is not None and (until is None or first <= until):
            delays.append(first - at)
    return tuple(delays)


def _deferred(verdict: Defer, message: GateMessage) -> Defer | Suppress:
    if message.expires_at is not None and verdict.until >= message.expires_at:
        return Suppress(EXPIRED, f"{verdict.rule} would defer it to {verdict.until.astimezone(UTC).isoformat()}, "
                                 f"at or after its expiry {message.expires_at.astimezone(UTC).isoformat()}")
    return verdict


def _fatigue(message: GateMessage, contact: ContactState, history: History, now: datetime) -> Suppress | None:
    policy = message.policy.fatigue
    if policy is None:
        return None
    paused = contact.paused_until.get(policy.rule)
    if paused is not None and paused > now:
        return Suppress(policy.rule, f"paused after fatigue until {paused.astimezone(UTC).isoformat()}")
    pause = timedelta(days=policy.pause_days)
    if policy.rule == fatigue.REMINDER_RULE:
        found = fatigue.reminder_fatigue(history.kind_at, history.reply_delays, now, threshold=policy.threshold,
                                         pause=pause)
    else:
        found = fatigue.cart_fatigue(history.kind_at, history.delivered, min(history.read, history.delivered), now,
                                     threshold=policy.threshold, pause=pause)
    return found if isinstance(found, Suppress) else None


def _caps(policy: GatePolicy, contact: ContactState, history: History, now: datetime) -> Suppress | None:
    cap = policy.frequency_cap
    found = caps.frequency_cap(history.marketing_at, now, limit=cap.limit, window=timedelta(days=cap.window_days),
                               contact_limit=contact.max_per_week if cap.window_days == 7 else None)
    if found is None and cap.window_days != 7 and contact.max_per_week is not None:
        found = caps.frequency_cap(history.marketing_at, now, limit=contact.max_per_week, window=timedelta(days=7))
    monthly = contact.max_per_month
    if contact.passive:  # "passive": at most 1 a month — or their own monthly limit when that is lower
        monthly = 1 if monthly is None else min(1, monthly)
    if found is None and monthly is not None:
        found = caps.frequency_cap(history.marketing_at, now, limit=monthly, window=MONTH)
    return found if isinstance(found, Suppress) else None


_DAY: Final = 86_400


def _windows(policy: GatePolicy, contact: ContactState) -> list[quiet_hours.QuietHoursPolicy] | None:
    """The allowed local hours as one or two windows: the policy's, narrowed to the contact's preferred hours
    wherever the two overlap — either may cross midnight, and the overlap may be two pieces (allowed 08:00–22:00,
    preferred 21:00–09:00 → 08:00–09:00 and 21:00–22:00); when they do not overlap at all, the policy's window.
    None when the flow is exempt (no quiet hours)."""
    if policy.quiet_hours_exempt:
        return None
    start, end = policy.quiet_hours.start, policy.quiet_hours.end
    allowed = [quiet_hours.QuietHoursPolicy(start, end, exempt_flows=frozenset())]
    if contact.preferred_hours is None:
        return allowed
    both = [(max(a, c), min(b, d)) for a, b in _segments(start, end) for c, d in _segments(*contact.preferred_hours)
            if max(a, c) < min(b, d)]
    if not both:
        return allowed
    both.sort()
    if len(both) > 1 and both[0][0] == 0 and both[-1][1] == _DAY:  # one window across midnight
        both = [(both[-1][0], both[0][1]), *both[1:-1]]
    return [quiet_hours.QuietHoursPolicy(_clock(a), _clock(b), exempt_flows=frozenset()) for a, b in both]


def _segments(start: time, end: time) -> list[tuple[int, int]]:
    """A local window [start, end) as seconds of the day: one segment, or two when it crosses midnight."""
    a = start.hour * 3600 + start.minute * 60 + start.second
    b = (end.hour * 3600 + end.minute * 60 + end.second) or _DAY
    return [(a, b)] if a < b else [(a, _DAY), (0, b)]


def _clock(seconds: int) -> time:
    seconds %= _DAY
    return time(seconds // 3600, seconds // 60 % 60, seconds % 60)


def _quiet(message: GateMessage, contact: ContactState, windows: list[quiet_hours.QuietHoursPolicy],
           now: datetime) -> Defer | Suppress | None:
    """R-S4 over the allowed windows: None when `now` lies in one, else the earliest deferral (or, when every
    window's next start reaches the expiry, the EXPIRED suppression)."""
    local = quiet_hours.QuietHoursMessage(message.category, message.flow, contact.zone, message.expires_at)
    verdicts = [quiet_hours.quiet_hours(local, now, w) for w in windows]
    if any(v is None for v in verdicts):
        return None
    defers = [v for v in verdicts if isinstance(v, Defer)]
    if defers:
        return min(defers, key=lambda d: d.until)
    return next(v for v in verdicts if isinstance(v, Suppress))
