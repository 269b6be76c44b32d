"""R-S4 quiet hours: the next allowed local instant across DST, and the marketing/expiry verdicts.

Expected instants are worked out by hand from the zones' published offsets (2026):
Europe/Berlin CET +01 → CEST +02 at 2026-03-29 01:00 UTC, back at 2026-10-25 01:00 UTC;
Pacific/Auckland NZDT +13 → NZST +12 at 2026-04-04 14:00 UTC, NZST → NZDT at 2026-09-26 14:00 UTC;
America/Sao_Paulo −03 all year (no DST since 2019); Asia/Kolkata +05:30 all year.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scrm_common.contracts.commands import MessageCategory
from sender.domain.gate.quiet_hours import QuietHoursMessage, QuietHoursPolicy, next_allowed, quiet_hours
from sender.domain.gate.verdicts import Defer, Suppress

BERLIN = ZoneInfo("Europe/Berlin")
SAO_PAULO = ZoneInfo("America/Sao_Paulo")
AUCKLAND = ZoneInfo("Pacific/Auckland")
KOLKATA = ZoneInfo("Asia/Kolkata")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# (what, zone, now, expected next allowed instant) with the default window 08:00–22:00
DEFAULT_WINDOW = [
    ("Berlin Sat 23:00 CET before spring-forward → Sun 08:00 CEST", BERLIN, utc(2026, 3, 28, 22), utc(2026, 3, 29, 6)),
    ("Berlin 01:30 CET, half an hour before the gap", BERLIN, utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 6)),
    ("Berlin 03:30 CEST, just after the gap", BERLIN, utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 6)),
    ("Berlin 07:59:59 CEST", BERLIN, utc(2026, 3, 29, 5, 59, 59), utc(2026, 3, 29, 6)),
    ("Berlin exactly 08:00 CEST is allowed", BERLIN, utc(2026, 3, 29, 6), utc(2026, 3, 29, 6)),
    ("Berlin 21:59:59 CEST is allowed", BERLIN, utc(2026, 3, 29, 19, 59, 59), utc(2026, 3, 29, 19, 59, 59)),
    ("Berlin exactly 22:00 CEST → next morning", BERLIN, utc(2026, 3, 29, 20), utc(2026, 3, 30, 6)),
    ("Berlin Sat 22:00 CEST before fall-back → Sun 08:00 CET", BERLIN, utc(2026, 10, 24, 20), utc(2026, 10, 25, 7)),
    ("Berlin 02:30 CEST, first pass of the repeated hour", BERLIN, utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 7)),
    ("Berlin 02:30 CET, second pass of the repeated hour", BERLIN, utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 7)),
    ("Berlin 07:00 CET — would have been 08:00 CEST the day before", BERLIN, utc(2026, 10, 25, 6), utc(2026, 10, 25, 7)),
    ("Berlin exactly 08:00 CET after fall-back", BERLIN, utc(2026, 10, 25, 7), utc(2026, 10, 25, 7)),
    ("Sao Paulo 22:00 −03 → 08:00 next day", SAO_PAULO, utc(2026, 1, 15, 1), utc(2026, 1, 15, 11)),
    ("Sao Paulo 07:59 −03", SAO_PAULO, utc(2026, 1, 15, 10, 59), utc(2026, 1, 15, 11)),
    ("Sao Paulo exactly 08:00 −03 in October (no DST)", SAO_PAULO, utc(2026, 10, 20, 11), utc(2026, 10, 20, 11)),
    ("Auckland 23:00 NZDT before DST ends → 08:00 NZST", AUCKLAND, utc(2026, 4, 4, 10), utc(2026, 4, 4, 20)),
    ("Auckland 00:00 NZST on DST start day → 08:00 NZDT", AUCKLAND, utc(2026, 9, 26, 12), utc(2026, 9, 26, 19)),
    ("Auckland exactly 08:00 NZDT", AUCKLAND, utc(2026, 1, 10, 19), utc(2026, 1, 10, 19)),
    ("Kolkata 07:59 IST", KOLKATA, utc(2026, 6, 1, 2, 29), utc(2026, 6, 1, 2, 30)),
    ("Kolkata 21:59:59 IST is allowed", KOLKATA, utc(2026, 6, 1, 16, 29, 59), utc(2026, 6, 1, 16, 29, 59)),
    ("Kolkata exactly 22:00 IST → 08:00 next day", KOLKATA, utc(2026, 6, 1, 16, 30), utc(2026, 6, 2, 2, 30)),
]


@pytest.mark.parametrize(("what", "zone", "now", "expected"), DEFAULT_WINDOW, ids=[c[0] for c in DEFAULT_WINDOW])
def test_next_allowed_default_window(what: str, zone: ZoneInfo, now: datetime, expected: datetime) -> None:
    got = next_allowed(now, zone)
    assert got == expected, what
    assert got.utcoffset() == timedelta(0)


# start times that fall into the DST gap or the repeated hour, and a window across midnight
OTHER_WINDOWS = [
    ("start 02:30 does not exist on 2026-03-29 → first instant after the gap, 03:00 CEST",
     BERLIN, time(2, 30), time(22), utc(2026, 3, 28, 23), utc(2026, 3, 29, 1)),
    ("start 02:00 is the gap's first wall time → 03:00 CEST",
     BERLIN, time(2, 0), time(22), utc(2026, 3, 28, 23), utc(2026, 3, 29, 1)),
    ("start 02:30 occurs twice on 2026-10-25 → the first occurrence (CEST)",
     BERLIN, time(2, 30), time(22), utc(2026, 10, 24, 23), utc(2026, 10, 25, 0, 30)),
    ("at 02:10 CET (second pass) the first 02:30 has gone → the second 02:30 (CET)",
     BERLIN, time(2, 30), time(22), utc(2026, 10, 25, 1, 10), utc(2026, 10, 25, 1, 30)),
    ("window 20:00–06:00 across midnight, 09:00 local → 20:00 the same day",
     SAO_PAULO, time(20), time(6), utc(2026, 1, 15, 12), utc(2026, 1, 15, 23)),
    ("window 20:00–06:00, 05:59 local is inside",
     SAO_PAULO, time(20), time(6), utc(2026, 1, 15, 8, 59), utc(2026, 1, 15, 8, 59)),
    ("window 20:00–06:00, exactly 06:00 local is outside",
     SAO_PAULO, time(20), time(6), utc(2026, 1, 15, 9), utc(2026, 1, 15, 23)),
]


@pytest.mark.parametrize(("what", "zone", "start", "end", "now", "expected"), OTHER_WINDOWS,
                         ids=[c[0] for c in OTHER_WINDOWS])
def test_next_allowed_dst_edges_and_wrapping_windows(
    what: str, zone: ZoneInfo, start: time, end: time, now: datetime, expected: datetime,
) -> None:
    assert next_allowed(now, zone, start, end) == expected, what


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_allowed(datetime(2026, 1, 1, 12), BERLIN)
    with pytest.raises(ValueError, match="empty"):
        next_allowed(utc(2026, 1, 1, 12), BERLIN, time(8), time(8))


def test_a_non_utc_now_gives_a_utc_answer() -> None:
    now = datetime(2026, 3, 29, 0, 30, tzinfo=BERLIN)  # 23:30 UTC the day before, in quiet hours
    assert next_allowed(now, BERLIN) == utc(2026, 3, 29, 6)


NIGHT = utc(2026, 3, 28, 22)  # 23:00 in Berlin; the next allowed instant is 2026-03-29 06:00 UTC
MORNING = utc(2026, 3, 29, 6)
POLICY = QuietHoursPolicy()


def message(category: MessageCategory = "marketing", flow: str = "welcome", expires_at: datetime | None = None,
            zone: ZoneInfo = BERLIN) -> QuietHoursMessage:
    return QuietHoursMessage(category=category, flow=flow, zone=zone, expires_at=expires_at)


VERDICTS = [
    ("marketing at night, no expiry → deferred", message(), NIGHT, Defer(MORNING, "R-S4")),
    ("marketing at night, expiry after the deferral → deferred",
     message(expires_at=utc(2026, 3, 29, 12)), NIGHT, Defer(MORNING, "R-S4")),
    ("marketing at night, expiry one second after the deferral → deferred",
     message(expires_at=MORNING + timedelta(seconds=1)), NIGHT, Defer(MORNING, "R-S4")),
    ("marketing during the day → no objection", message(expires_at=utc(2026, 3, 29, 12)), utc(2026, 3, 29, 9), None),
    ("marketing at exactly 08:00 → no objection", message(), MORNING, None),
    ("utility at night → exempt", message(category="utility", flow="order_confirmation"), NIGHT, None),
    ("authentication at night → exempt", message(category="authentication", flow="otp"), NIGHT, None),
    ("service reply at night → exempt", message(category="service", flow="opt_out_confirmation"), NIGHT, None),
    ("birthday marketing at 05:00 local → the R-T5 exception", message(flow="birthday"), utc(2026, 6, 1, 3), None),
    ("Kolkata marketing at 07:00 IST → deferred to 08:00 IST",
     message(zone=KOLKATA), utc(2026, 6, 1, 1, 30), Defer(utc(2026, 6, 1, 2, 30), "R-S4")),
]


@pytest.mark.parametrize(("what", "msg", "now", "expected"), VERDICTS, ids=[c[0] for c in VERDICTS])
def test_quiet_hours_verdicts(what: str, msg: QuietHoursMessage, now: datetime, expected: object) -> None:
    assert quiet_hours(msg, now, POLICY) == expected, what


@pytest.mark.parametrize("expires_at", [NIGHT + timedelta(minutes=15), MORNING - timedelta(seconds=1), MORNING],
                         ids=["welcome 15 min after its event", "one second before the deferral", "exactly at it"])
def test_a_deferral_reaching_the_expiry_is_suppressed_naming_both_times(expires_at: datetime) -> None:
    verdict = quiet_hours(message(expires_at=expires_at), NIGHT, POLICY)
    assert isinstance(verdict, Suppress)
    assert verdict.rule == "EXPIRED"
    assert MORNING.isoformat() in verdict.reason
    assert expires_at.isoformat() in verdict.reason
    assert "08:00" in verdict.reason and "Europe/Berlin" in verdict.reason


def test_the_exempt_flows_are_a_policy_setting() -> None:
    no_exceptions = QuietHoursPolicy(exempt_flows=frozenset())
    assert quiet_hours(message(flow="birthday"), NIGHT, no_exceptions) == Defer(MORNING, "R-S4")
    vip = QuietHoursPolicy(exempt_flows=frozenset({"vip_drop"}))
    assert quiet_hours(message(flow="vip_drop"), NIGHT, vip) is None


def test_a_tenant_window_moves_the_deferral() -> None:
    later = QuietHoursPolicy(start=time(9, 30), end=time(20))
    assert quiet_hours(message(), utc(2026, 3, 29, 18, 30), later) == Defer(utc(2026, 3, 30, 7, 30), "R-S4")


# --- properties -----------------------------------------------------------------------------------

ZONES = [BERLIN, SAO_PAULO, AUCKLAND, KOLKATA, ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe"),
         ZoneInfo("Pacific/Chatham"), ZoneInfo("America/Santiago"), ZoneInfo("UTC")]
# instants of DST changes in the zones above (2026), so the search lands near them often
TRANSITIONS = [utc(2026, 3, 29, 1), utc(2026, 10, 25, 1), utc(2026, 4, 4, 14), utc(2026, 9, 26, 14),
               utc(2026, 3, 8, 7), utc(2026, 11, 1, 6), utc(2026, 4, 4, 15), utc(2026, 10, 3, 15)]

near_transition = st.builds(lambda t, s: t + timedelta(seconds=s), st.sampled_from(TRANSITIONS),
                            st.integers(-2 * 86400, 2 * 86400))
anywhere = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC))
wall_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))


def inside(instant: datetime, zone: ZoneInfo, start: time, end: time) -> bool:
    """The test's own reading of 'allowed': the local wall clock lies in [start, end)."""
    wall = instant.astimezone(zone).time()
    return start <= wall < end if start < end else (wall >= start or wall < end)


@settings(max_examples=500, deadline=None)
@given(now=st.one_of(near_transition, anywhere), zone=st.sampled_from(ZONES), start=wall_times, end=wall_times)
@example(now=utc(2026, 3, 28, 23), zone=BERLIN, start=time(2, 15), end=time(2, 45))  # whole window in the gap
def test_the_answer_is_never_in_quiet_hours_nor_before_now_and_is_the_first_allowed_instant(
    now: datetime, zone: ZoneInfo, start: time, end: time,
) -> None:
    if start == end:
        return
    got = next_allowed(now, zone, start, end)
    assert got >= now
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)
    assert inside(got, zone, start, end)
    if got > now:
        assert not inside(now, zone, start, end)
        just_before = got - timedelta(seconds=1)
        if just_before >= now:
            assert not inside(just_before, zone, start, end)
        assert got - now <= timedelta(hours=49)  # at most a day's wait, or two when a window fell into a gap
    else:
        assert inside(now, zone, start, end)
