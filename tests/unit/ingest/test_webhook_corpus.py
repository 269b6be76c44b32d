"""Every row of tests/corpus/webhooks/ through the pure domain: the events it must produce, the items it must count."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.domain.webhooks import FIELDS, route, translate
from ingest.domain.webhooks.inbound import INTERACTIVE_TYPES, MESSAGE_TYPES, SYSTEM_TYPES
from tests.corpus.webhooks.corpus import PHONE_NUMBER_ID, TENANT, WABA_ID, Case, cases, labels, unmatched, walk

RECEIVED_AT = datetime(2026, 11, 30, 9, 15, 7, tzinfo=UTC)
CASES = cases()


def _produced(case: Case) -> tuple[list[dict[str, Any]], list[Any], list[Any]]:
    translated = translate(case.payload, now=RECEIVED_AT)
    by_tenant, unrouted = route(translated.events, numbers={PHONE_NUMBER_ID: TENANT}, accounts={WABA_ID: TENANT})
    routed = {id(e) for events in by_tenant.values() for e in events}
    assert set(by_tenant) <= {TENANT}
    produced = [{**item.event.model_dump(mode="json"),
                 "routed_by": "phone_number_id" if item.phone_number_id else "waba_id"}
                for item in translated.events if id(item.event) in routed]
    return produced, [*translated.skipped, *unrouted], translated.repaired


def test_the_corpus_has_rows() -> None:
    assert len(CASES) >= 60
    assert all(case.expect["about"] for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_row_produces_exactly_its_events_and_counts(case: Case) -> None:
    produced, skipped, repaired = _produced(case)
    missing, extra = unmatched(case.expect["events"], produced, received=RECEIVED_AT)
    assert not missing and not extra, {"missing": missing, "unexpected": extra}
    assert labels(skipped) == labels(case.expect["skipped"])
    assert labels(repaired) == labels(case.expect["repaired"])
    for want in case.expect["skipped"]:
        if "error_codes" in want:
            assert any(list(s.error_codes) == want["error_codes"] and s.reason == want["reason"] for s in skipped), want


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_row_is_stable_when_meta_redelivers_it(case: Case) -> None:
    """Meta retries deliveries for days: the same payload later must give the same event ids (dedupe)."""
    first = [e.event.event_id for e in translate(case.payload, now=RECEIVED_AT).events]
    again = [e.event.event_id for e in translate(case.payload, now=datetime(2026, 12, 3, tzinfo=UTC)).events]
    assert first == again
    assert len(set(first)) == len(first)


def _covered() -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {"field": set(), "message": set(), "interactive": set(), "system": set()}
    for case in CASES:
        for field, value in walk(case.payload):
            seen["field"].add(field)
            for message in value.get("messages") or []:
                if isinstance(message, dict):
                    seen["message"].add(message.get("type"))
                    seen["interactive"].add((message.get("interactive") or {}).get("type"))
                    seen["system"].add((message.get("system") or {}).get("type"))
    return seen


@pytest.mark.parametrize(("table", "registered"), [
    ("field", FIELDS), ("message", MESSAGE_TYPES), ("interactive", INTERACTIVE_TYPES), ("system", SYSTEM_TYPES),
])
def test_every_registered_parser_has_a_corpus_row(table: str, registered: dict[str, Any]) -> None:
    assert set(registered) - _covered()[table] == set()


def test_every_kind_of_event_and_skip_reason_appears_in_the_corpus() -> None:
    types = Counter(e["type"] for c in CASES for e in c.expect["events"])
    assert set(types) == {"message.inbound", "message.status", "contact.marketing_preference_changed",
                          "contact.number_changed", "template.updated", "account.updated"}
    reasons = {s["reason"] for c in CASES for s in c.expect["skipped"] + c.expect["repaired"]}
    from ingest.domain.webhooks import model
    declared = {v for k, v in vars(model).items() if k.isupper() and isinstance(v, str)}
    assert declared - reasons == set()
