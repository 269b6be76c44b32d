"""CONTRACT §3: pointed at any server speaking the Cloud API format, the platform just works."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from scrm_stack.stack import free_port
from tests.support.events import days_ago, new_order, new_phone, payment, sign, status, status_webhook
from tests.support.stack import TestStack, poll, start_stack

PHONE_NUMBER_ID = "987654321098765"
TOKEN = "external-token-" + secrets.token_hex(4)


class CloudApiDouble:
    """An independent HTTP server answering like Meta's /messages endpoint; it records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                wamid = "wamid.HBgL" + secrets.token_hex(20).upper()
                double.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body,
                                        "at": time.monotonic(), "wamid": wamid})
                reply = json.dumps({"messaging_product": "whatsapp",
                                    "contacts": [{"input": body.get("to"), "wa_id": str(body.get("to")).lstrip("+")}],
                                    "messages": [{"id": wamid}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def external(backend, work_dir: Path) -> Iterator[tuple[TestStack, CloudApiDouble]]:  # type: ignore[no-untyped-def]
    double = CloudApiDouble()
    stack = start_stack(work_dir, backend,
                        processes=("ingest", "trigger-engine", "sender", "segmenter", "reporting"),
                        env={"SCRM_WHATSAPP_BASE_URL": double.url, "SCRM_DEMO": "0",
                             "SCRM_BOOTSTRAP_PHONE_NUMBER_ID": PHONE_NUMBER_ID, "SCRM_BOOTSTRAP_ACCESS_TOKEN": TOKEN})
    yield stack, double
    stack.close()
    double.close()


def test_one_payment_is_one_correct_request_and_duplicates_stay_one(external: tuple[TestStack, CloudApiDouble]) -> None:
    stack, double = external
    order, phone = new_order(), new_phone()
    event = payment(order_id=order, phone=phone, external_id="ext-1", locale="de-DE")
    posted = time.monotonic()
    assert stack.post_events(event).status_code == 202
    [request] = poll(lambda: [r for r in double.requests if r["body"].get("to") == phone], timeout=10,
                     what="the request at the external server", interval=0.02)
    latency = request["at"] - posted
    assert request["path"] == f"/v25.0/{PHONE_NUMBER_ID}/messages"
    assert request["auth"] == f"Bearer {TOKEN}"
    body = request["body"]
    assert body["messaging_product"] == "whatsapp"
    assert body["recipient_type"] == "individual"
    assert body["type"] == "template"
    assert body["template"]["name"] == "order_confirmation"
    assert body["template"]["language"]["code"] == "de"
    params = [p["text"] for p in body["template"]["components"][0]["parameters"]]
    assert params[0] == order and len(params) == 8
    assert "149,90 €" in params  # German locale formats money the German way
    print(f"event → external Cloud API latency: {latency:.3f}s")

    for _ in range(4):
        assert stack.post_events(event).status_code == 202
    assert stack.post_events(payment(order_id=order, phone=phone, external_id="ext-1")).status_code == 202
    decisions = poll(lambda: (d := stack.http.get(stack.url("trigger-engine", "/v1/contacts/ext-1/decisions"),
                                                  headers=stack.auth).json()["decisions"]) and len(d) >= 6 and d,
                     timeout=20, what="the duplicates' decisions")
    assert sum(d["outcome"] == "send" for d in decisions) == 1
    assert len([r for r in double.requests if r["body"].get("to") == phone]) == 1


def test_a_signed_read_webhook_is_counted_in_the_overview_once(external: tuple[TestStack, CloudApiDouble]) -> None:
    """A read receipt Meta delivers twice counts once — for a message the platform sent (issue 5: receipts
    for wamids it never sent, e.g. from an agent app on the same number, are not the tenant's figures)."""
    stack, double = external
    recipient = new_phone()
    for _ in range(2):
        assert stack.post_events(payment(order_id=new_order(), phone=recipient)).status_code == 202
    requests = poll(lambda: (r := [r for r in double.requests if r["body"].get("to") == recipient]) and len(r) == 2
                    and r, timeout=20, what="two confirmations at the external server")
    first, second = (r["wamid"] for r in requests)
    today = days_ago(0)
    iso_day = today.date().isoformat()

    def read_count() -> int:
        resp = stack.http.get(stack.url("reporting", "/v1/reports/overview"), params={"from": iso_day, "to": iso_day},
                              headers=stack.auth)
        resp.raise_for_status()
        return int(resp.json()["totals"]["read"])

    def post(raw: bytes) -> None:
        headers = {"X-Hub-Signature-256": sign(stack.app_secret, raw), "Content-Type": "application/json"}
        assert stack.http.post(stack.url("ingest", "/v1/webhooks/whatsapp"), content=raw,
                               headers=headers).status_code == 200

    before = read_count()
    receipt = status_webhook(phone_number_id=PHONE_NUMBER_ID, statuses=[status(first, "read", recipient, today)])
    post(receipt)
    post(receipt)  # Meta delivers at least once: the same receipt twice
    # a later receipt for the same contact (same partition, so ordered after both copies) proves both were applied
    post(status_webhook(phone_number_id=PHONE_NUMBER_ID, statuses=[status(second, "read", recipient, today)]))
    poll(lambda: read_count() >= before + 2, timeout=30, what="both read receipts in the overview")
    assert read_count() == before + 2


def test_an_undeliverable_reported_by_webhook_is_retried_once_after_24h_and_does_not_block_the_number(
        external: tuple[TestStack, CloudApiDouble]) -> None:
    """R-S7: 131026 includes temporary causes — the message waits for its one 24 h retry, the number stays
    usable (marked invalid only if that retry fails too), and the next order confirmation is sent."""
    stack, double = external
    phone = new_phone()
    assert stack.post_events(payment(order_id=new_order(), phone=phone)).status_code == 202
    [request] = poll(lambda: [r for r in double.requests if r["body"].get("to") == phone], timeout=10,
                     what="the first request")
    key = request["body"]["biz_opaque_callback_data"]

    def logged(idempotency_key: str) -> dict[str, Any] | None:
        resp = stack.http.get(stack.url("sender", f"/v1/messages/{idempotency_key}"), headers=stack.auth)
        return resp.json() if resp.status_code == 200 else None

    sent = poll(lambda: (m := logged(key)) and m["state"] == "sent" and m, timeout=20, what="the send logged")
    assert sent["wa_id"] == phone.lstrip("+")  # the identity the Cloud API answered is learned
    failed = status(request["wamid"], "failed", phone, days_ago(0))
    failed["biz_opaque_callback_data"] = key
    failed["errors"] = [{"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
                         "error_data": {"details": "Message Undeliverable."}}]
    raw = status_webhook(phone_number_id=PHONE_NUMBER_ID, statuses=[failed])
    failed_at = time.time()
    assert stack.http.post(stack.url("ingest", "/v1/webhooks/whatsapp"), content=raw,
                           headers={"X-Hub-Signature-256": sign(stack.app_secret, raw),
                                    "Content-Type": "application/json"}).status_code == 200

    waiting = poll(lambda: (m := logged(key)) and m["state"] == "queued" and m, timeout=20,
                   what="the message queued for its one 24 h retry")
    assert (waiting["error_code"], waiting["late_retry_used"], waiting["wamid"]) == (131026, True, None)
    retry_at = datetime.fromisoformat(waiting["next_attempt_at"]).timestamp()
    assert retry_at - failed_at >= 24 * 3600 - 60
    marks = stack.http.get(stack.url("sender", "/v1/invalid-numbers"), headers=stack.auth)
    assert marks.status_code == 200 and phone not in [m["phone"] for m in marks.json()["invalid_numbers"]]
    unmark = stack.http.delete(stack.url("sender", f"/v1/invalid-numbers/{phone}"), headers=stack.auth)
    assert unmark.status_code == 404 and unmark.json()["error"]["code"] == "not_marked"

    # the customer's next order confirmation is sent, not refused
    second = new_order()
    assert stack.post_events(payment(order_id=second, phone=phone)).status_code == 202
    poll(lambda: (m := logged(f"demo|order_confirmation|{second}")) and m["state"] == "sent", timeout=20,
         what="the second message to be sent")
    assert len([r for r in double.requests if r["body"].get("to") == phone]) == 2
