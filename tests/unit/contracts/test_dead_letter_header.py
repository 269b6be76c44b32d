"""Reading the consume loop's `dead_letter` header: tolerant of what older or damaged records carry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from scrm_common.contracts.dead_letter import meta_time, read_meta

DEFAULT = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize(("headers", "meta"), [
    ([], {}),
    ([("tenant", b"demo")], {}),
    ([("dead_letter", b'{"service": "a"}')], {"service": "a"}),
    ([("dead_letter", b'{"service": "a"}'), ("dead_letter", b'{"service": "b"}')], {"service": "b"}),  # outermost
    ([("dead_letter", b"not json")], {}),
    ([("dead_letter", b"\xff\xfe")], {}),
    ([("dead_letter", b"[1, 2]")], {}),
    ([("dead_letter", None)], {}),
    ([("dead_letter", b"[" * 100_000)], {}),
])
def test_the_last_dead_letter_header_is_read_or_nothing(headers, meta):
    assert read_meta(headers) == meta


@pytest.mark.parametrize(("value", "at"), [
    ("2026-11-30T10:00:00+00:00", datetime(2026, 11, 30, 10, tzinfo=UTC)),
    ("2026-11-30T10:00:00", datetime(2026, 11, 30, 10, tzinfo=UTC)),  # naive: UTC
    ("2026-11-30T11:00:00+01:00", datetime(2026, 11, 30, 11, tzinfo=timezone(timedelta(hours=1)))),
    ("yesterday", DEFAULT), (None, DEFAULT), (1733000000, DEFAULT),
])
def test_the_dead_letter_time_is_aware_or_the_default(value, at):
    assert meta_time(value, DEFAULT) == at
