"""R-S4 quiet hours: no marketing before 08:00 or after 22:00 in the contact's own local time.

A marketing message asked to go in quiet hours is deferred to the next allowed local instant
(`next_allowed`), computed in the contact's IANA zone so that DST changes move it correctly:

* a start time that does not exist that day (inside a spring-forward gap, e.g. 02:30 in Berlin on
  2026-03-29) moves to the first valid instant after the gap (03:00 CEST);
* a start time that occurs twice (the repeated autumn hour) is the first occurrence (fold 0), unless
  that one has already passed, then the second (fold 1).

Utility/authentication/service messages are exempt, and so is every flow the policy names as an
exception (by default the birthday flow, R-T5). A deferral that would reach the message's expiry
(welcome: 15 min after its event, R-T1.1) becomes ``Suppress("EXPIRED", …)``: no greeting eight hours
late.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from scrm_common.contracts.commands import MessageCategory
from sender.domain.gate.verdicts import Defer, Suppress, Verdict

RULE = "R-S4"
EXPIRED = "EXPIRED"

DEFAULT_START = time(8, 0)
DEFAULT_END = time(22, 0)


@dataclass(frozen=True, slots=True)
class QuietHoursPolicy:
    """A tenant's (or flow's) quiet-hours setting.

    Sending is allowed at local wall-clock times in ``[start, end)``; ``start > end`` means the
    allowed window crosses midnight. ``exempt_flows`` are sent at any hour (R-T5 birthday).
    """

    start: time = DEFAULT_START
    end: time = DEFAULT_END
    exempt_flows: frozenset[str] = field(default_factory=lambda: frozenset({"birthday"}))


@dataclass(frozen=True, slots=True)
class QuietHoursMessage:
    """What the rule needs to know about one queued message.

    ``zone`` is the contact's time zone (its own or the one derived from the phone number);
    ``expires_at`` (aware) is the instant from which the message is no longer worth sending,
    ``None`` when it never expires.
    """

    category: MessageCategory
    flow: str
    zone: ZoneInfo
    expires_at: datetime | None = None


def is_allowed(local_time: time, start: time = DEFAULT_START, end: time = DEFAULT_END) -> bool:
    """Whether a local wall-clock time lies in the allowed window ``[start, end)``.

    ``start > end`` is a window across midnight. Raises ``ValueError`` when ``start == end``
    (an empty window: no instant would ever be allowed).
    """
    if start == end:
        raise ValueError(f"quiet hours: the allowed window {start:%H:%M}–{end:%H:%M} is empty")
    wall = local_time.replace(tzinfo=None)
    if start < end:
        return start <= wall < end
    return wall >= start or wall < end


def next_allowed(now_utc: datetime, zone: ZoneInfo, start: time = DEFAULT_START, end: time = DEFAULT_END) -> datetime:
    """The first instant at or after ``now_utc`` whose local time in ``zone`` lies in ``[start, end)``.

    Returns an aware UTC datetime: ``now_utc`` itself when it is already allowed, else the next local
    ``start`` (DST gaps and repeated hours resolved as in the module docstring). Raises ``ValueError``
    for a naive ``now_utc`` or an empty window.
    """
    if now_utc.tzinfo is None or now_utc.utcoffset() is None:
        raise ValueError("quiet hours: now must be timezone-aware")
    now = now_utc.astimezone(UTC)
    local = now.astimezone(zone)
    if is_allowed(local.timetz(), start, end):
        return now
    candidates: list[datetime] = []
    for days in range(4):  # today's or tomorrow's start; the rest only when a whole window fell into a gap
        for instant in _local_instants(local.date() + timedelta(days=days), start, zone):
            if instant > now and is_allowed(instant.astimezone(zone).timetz(), start, end):
                candidates.append(instant)
        if candidates:
            return min(candidates)
    raise ValueError(f"quiet hours: no allowed instant within 4 days of {now.isoformat()} in {zone.key}")


def quiet_hours(message: QuietHoursMessage, now: datetime, policy: QuietHoursPolicy) -> Verdict | None:
    """R-S4 for one message at ``now`` (aware).

    ``None`` when the message may go now (not marketing, an exempt flow, or inside the allowed hours);
    ``Defer(until, "R-S4")`` with the next allowed instant (UTC); ``Suppress("EXPIRED", reason)``
    when that instant is at or after ``message.expires_at`` — the reason names both times.
    """
    if message.category != "marketing" or message.flow in policy.exempt_flows:
        return None
    until = next_allowed(now, message.zone, policy.start, policy.end)
    if until == now:
        return None
    if message.expires_at is not None and until >= message.expires_at:
        local = until.astimezone(message.zone)
        return Suppress(
            EXPIRED,
            f"quiet hours ({policy.start:%H:%M}–{policy.end:%H:%M} {message.zone.key}) would defer it to "
            f"{until.isoformat()} ({local:%Y-%m-%d %H:%M %Z} local), at or after its expiry "
            f"{message.expires_at.astimezone(UTC).isoformat()}",
        )
    return Defer(until, RULE)


def _local_instants(day: date, wall: time, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants at which local wall-clock ``wall`` on ``day`` occurs in ``zone``.

    Two for a repeated (autumn) time, one normally; for a time inside a spring-forward gap, the
    first valid instant after the gap.
    """
    first = datetime.combine(day, wall, tzinfo=zone).replace(fold=0)
    second = first.replace(fold=1)
    first_utc, second_utc = first.astimezone(UTC), second.astimezone(UTC)
    if first_utc == second_utc:
        return [first_utc]
    if first_utc < second_utc:  # repeated hour: fold 0 is the earlier occurrence
        return [first_utc, second_utc]
    # A gap: fold 0 reads the wall time with the offset before it, fold 1 with the one after, so the
    # transition lies in (second_utc, first_utc]. Transitions fall on whole seconds: bisect on them.
    low, high = second_utc, first_utc
    before = first.utcoffset()
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        mid = mid.replace(microsecond=0)
        if mid <= low:
            mid = low + timedelta(seconds=1)
        if mid.astimezone(zone).utcoffset() == before:
            low = mid
        else:
            high = mid
    return [high]
