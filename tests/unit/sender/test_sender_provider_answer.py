"""Identity learning: the send response's `contacts[0].wa_id` reaches the send log and the "sent" event."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from scrm_common.contracts.commands import SendMessage, TemplateMessage
from scrm_common.contracts.envelope import decode_event
from sender.adapters.cloud_api import Accepted, CloudApiClient, Rejected, Unknown, accepted_from, rejected_from
from sender.handlers import opt_out_event, outcome_event

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
WAMID = "wamid.HBgNNTIxNTUxMjM0NTY3OBUCABEYEjQ2"


@pytest.mark.parametrize(("payload", "accepted"), [
    ({"messaging_product": "whatsapp", "contacts": [{"input": "+525512345678", "wa_id": "5215512345678"}],
      "messages": [{"id": WAMID}]}, Accepted(WAMID, "5215512345678", "+525512345678", None)),
    ({"contacts": [{"input": "+5511987654321", "wa_id": "551187654321"}],
      "messages": [{"id": WAMID, "message_status": "held_for_quality_assessment"}]},
     Accepted(WAMID, "551187654321", "+5511987654321", "held_for_quality_assessment")),
    ({"messages": [{"id": WAMID, "message_status": "paused"}]}, Accepted(WAMID, None, None, "paused")),
    ({"contacts": [{"input": "+4915112345678", "wa_id": "+49 151"}], "messages": [{"id": WAMID}]},
     Accepted(WAMID, None, "+4915112345678", None)),  # not digits: not a wa_id
    ({"contacts": "x", "messages": [{"id": WAMID, "message_status": 7}]}, Accepted(WAMID)),
    ({"contacts": [None], "messages": [{"id": WAMID}]}, Accepted(WAMID)),
    ({"messages": []}, None),
    ({"messages": [{"id": ""}]}, None),
    ({"messages": [{"id": 12}]}, None),
    ({"messages": "x"}, None),
    ({}, None),
])
def test_reading_the_send_response(payload: dict, accepted: Accepted | None) -> None:
    assert accepted_from(payload) == accepted


def _command(contact_key: str = "cust-mx-1") -> SendMessage:
    return SendMessage(
        idempotency_key="demo|order_confirmation|A1", tenant="demo", account_id="100000000000001",
        flow="order_confirmation", category="utility", contact_key=contact_key, to="+525512345678",
        template=TemplateMessage(name="order_confirmation", language="es", parameters=["A1"]),
        event_id="pay-1", event_occurred_at=NOW, decided_at=NOW)


def _decoded(row):  # type: ignore[no-untyped-def]
    return decode_event(row.key, row.value, [(k, v.encode()) for k, v in row.headers]).event


@pytest.mark.parametrize(("wa_id", "contact"), [
    ("5215512345678", {"external_id": "cust-mx-1", "phone": "+525512345678", "wa_id": "5215512345678"}),
    (None, {"external_id": "cust-mx-1", "phone": "+525512345678"}),
])
def test_the_sent_event_carries_phone_and_wa_id(wa_id: str | None, contact: dict) -> None:
    event = _decoded(outcome_event(_command(), status="sent", at=NOW, wamid=WAMID, wa_id=wa_id))
    assert event.contact.model_dump(exclude_none=True) == contact
    assert (event.data.status, event.data.message_id) == ("sent", WAMID)


def test_the_late_retrys_sent_event_has_its_own_id() -> None:
    first = _decoded(outcome_event(_command(), status="sent", at=NOW, wamid=WAMID))
    late = _decoded(outcome_event(_command(), status="sent", at=NOW, wamid=WAMID + "2", late_retry=True))
    assert first.event_id != late.event_id
    assert late.data.idempotency_key == first.data.idempotency_key


def test_a_synchronous_131050_is_the_contacts_marketing_opt_out() -> None:
    row = opt_out_event(_command(), at=NOW, detail="The recipient stopped marketing messages")
    event = _decoded(row)
    assert event.type == "contact.marketing_preference_changed"
    assert (event.data.value, event.data.source, event.data.account_id) == ("stop", "error_131050",
                                                                              "100000000000001")
    assert event.contact.phone == "+525512345678"
    assert json.loads(row.value)["contact"]["external_id"] == "cust-mx-1"


ERROR_ANSWERS = [  # (case, HTTP status, body, what the client makes of it)
    ("Meta's shape", 400, {"error": {"code": 131026, "message": "(#131026) Message undeliverable",
                                     "error_data": {"messaging_product": "whatsapp", "details": "undeliverable"}}},
     Rejected(131026, 400, "undeliverable")),
    ("error_data a string", 400, {"error": {"code": 131026, "message": "(#131026) m", "error_data": "x"}},
     Rejected(131026, 400, "(#131026) m")),
    ("error_data a list", 400, {"error": {"code": 131049, "message": "m", "error_data": ["x"]}},
     Rejected(131049, 400, "m")),
    ("code as text", 400, {"error": {"code": "131047", "message": "m"}}, Rejected(131047, 400, "m")),
    ("code a boolean", 400, {"error": {"code": True, "message": "m"}}, Rejected(None, 400, "m")),
    ("details an object", 400, {"error": {"code": 100, "error_data": {"details": {"field": "to"}}}},
     Rejected(100, 400, "{'field': 'to'}")),
    ("error a string", 500, {"error": "boom"}, Rejected(None, 500, '{"error":"boom"}')),
    ("a 200 that is a list", 200, [{"id": WAMID}], Unknown("200 without a message id")),
]


@pytest.mark.parametrize(("case", "status", "body", "result"), ERROR_ANSWERS, ids=[c[0] for c in ERROR_ANSWERS])
async def test_every_provider_answer_is_read_never_raised(case: str, status: int, body: object,
                                                          result: object) -> None:
    """An answer the client cannot read must not raise: the dispatcher would take it for a send in doubt
    and resend it after every doubt timeout, without ever using an attempt (R-S7 would never end it)."""
    client = CloudApiClient(base_url="http://graph.test", version="v25.0", timeout=1.0, max_connections=1)
    client._client = httpx.AsyncClient(  # noqa: SLF001 - the transport is the only thing replaced
        base_url="http://graph.test",
        transport=httpx.MockTransport(lambda _request: httpx.Response(status, json=body)))
    try:
        assert await client.send(phone_number_id="1", access_token="t", body={}) == result, case
    finally:
        await client.aclose()


@pytest.mark.parametrize(("payload", "text", "code", "reason"), [
    ({"error": {"code": 2**40, "message": "x"}}, "", None, "x"),           # no Meta code is that large
    ({"error": {"code": "99999999999", "message": "x"}}, "", None, "x"),
    ({"error": {"code": -5, "message": "x"}}, "", None, "x"),
    ({"error": {"code": 131026, "message": "bad\u0000 num\u0007ber"}}, "", 131026, "bad\ufffd num\ufffdber"),
    ("not json", "gateway\u0000 down", None, "gateway\ufffd down"),
])
def test_a_provider_answer_is_stored_whatever_it_carries(payload, text, code, reason) -> None:
    """Out-of-range codes and control characters in Meta's answer never make the status unstorable."""
    rejected = rejected_from(400, payload, text)
    assert (rejected.code, rejected.details) == (code, reason)
