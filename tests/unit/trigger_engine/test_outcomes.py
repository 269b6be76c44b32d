"""A failed message in its person's story: which records of the event log tell one, skipped how cheaply, and
the line's reason (pure: no broker, no database)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from scrm_common.contracts import topics
from scrm_common.contracts.envelope import PoisonMessage, encode_event
from scrm_common.contracts.events import parse_event
from scrm_stack.drain import GROUP_SERVICE, KNOWN_GROUPS
from tests.unit.trigger_engine.factories import PHONE, T0, payment
from trigger_engine.domain.outcomes import OUTCOMES_GROUP, FailedMessage, failure_reason, surely_not_failed
from trigger_engine.outcomes import decode_failure

KEY = "acme:order_confirmation:cust-1:ord-1:confirm"


def status(kind: str = "failed", *, key: str | None = KEY, code: int | None = None, reason: str | None = None,
           event_id: str = "st-1") -> Any:
    data: dict[str, Any] = {"status": kind, "message_id": "wamid.1", "idempotency_key": key, "error_code": code,
                            "error_reason": reason}
    return parse_event({"event_id": event_id, "type": "message.status", "occurred_at": T0.isoformat(),
                        "contact": {"phone": PHONE}, "data": {k: v for k, v in data.items() if v is not None}})


@dataclass
class Record:
    """What the consume loop hands the decoder."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def record(event: Any, *, tenant: str = "acme", type_header: bool = True) -> Record:
    key, value, headers = encode_event(tenant, event, ingested_at=T0)
    return Record(key, value, [h for h in headers if type_header or h[0] != "type"])


@pytest.mark.parametrize(("error_reason", "error_code", "expected"), [
    ("template order_confirmation (de) is paused", None, "template order_confirmation (de) is paused"),
    ("Re-engagement message", 131047, "Re-engagement message (error 131047)"),
    (None, 131026, "failed without a reason given (error 131026)"),
    ("  ", None, "failed without a reason given"),
    (None, 0, "failed without a reason given (error 0)"),
])
def test_the_reason_is_the_providers_with_its_code(error_reason: str | None, error_code: int | None,
                                                    expected: str) -> None:
    assert failure_reason(error_reason, error_code) == expected


@pytest.mark.parametrize(("headers", "value", "skipped"), [
    ([("type", b"payment.succeeded")], b'{"data": {"status": "failed"}}', True),  # another type: never parsed
    ([("type", b"message.status")], b'{"data": {"status": "delivered"}}', True),
    ([("type", b"message.status")], b'{"data": {"status": "read"}}', True),
    ([("type", b"message.status")], b'{"data": {"status": "failed"}}', False),
    ([("type", b"message.status")], b'{"data": {"status": "\\u0066ailed"}}', False),  # escaped: parse to know
    ([], b'{"type": "message.status", "data": {"status": "sent"}}', True),  # no type header: the bytes decide
    ([], b'{"type": "message.status", "data": {"status": "failed"}}', False),
    ([("type", b"\xff")], b'{"data": {"status": "failed"}}', False),  # unreadable header: the bytes decide
    ([("type", b"message.status")], None, True),
])
def test_what_surely_is_no_failed_status_is_told_without_parsing(
        headers: list[tuple[str, bytes]], value: bytes | None, skipped: bool) -> None:
    assert surely_not_failed(headers, value) is skipped


@pytest.mark.parametrize("type_header", [True, False])
@pytest.mark.parametrize(("event", "expected"), [
    (status("failed", reason="template order_confirmation (de) is paused"),
     FailedMessage("acme", "st-1", KEY, "template order_confirmation (de) is paused", T0)),
    (status("failed", code=131026, reason="Message undeliverable"),
     FailedMessage("acme", "st-1", KEY, "Message undeliverable (error 131026)", T0)),
    (status("failed", key=None, reason="a message not sent by the platform"), None),
    (status("sent"), None),
    (status("delivered"), None),
    (status("read"), None),
    (payment(external_id="cust-failed", event_id="failed-pay"), None),  # "failed" in the bytes, another type
])
def test_only_failed_statuses_with_a_key_are_told(event: Any, expected: FailedMessage | None,
                                                  type_header: bool) -> None:
    assert decode_failure(record(event, type_header=type_header)) == expected


def test_the_line_keeps_the_tenant_of_the_record() -> None:
    told = decode_failure(record(status(reason="x"), tenant="globex"))
    assert told is not None and told.tenant == "globex"


def test_a_status_that_says_failed_but_is_no_valid_event_is_poison() -> None:
    raw = {"event_id": "st-9", "type": "message.status", "occurred_at": "not a time",
           "data": {"status": "failed", "idempotency_key": KEY}}
    with pytest.raises(PoisonMessage):
        decode_failure(Record(b"acme:wamid:1", json.dumps(raw).encode(),
                              [("tenant", b"acme"), ("type", b"message.status")]))


def test_a_status_that_is_no_failure_is_skipped_even_when_unreadable() -> None:
    """A delivery receipt is none of this consumer's business: not parsed, so never its poison."""
    assert decode_failure(Record(b"acme:wamid:1", b'{"data": {"status": "read"', [("type", b"message.status")])) \
        is None


def test_the_outcome_group_is_drained_with_the_trigger_engine() -> None:
    """`make run`'s graceful stop waits for this group too, and names it when the trigger-engine is gone."""
    assert (KNOWN_GROUPS[OUTCOMES_GROUP], GROUP_SERVICE[OUTCOMES_GROUP]) == ((topics.EVENTS,), "trigger-engine")
