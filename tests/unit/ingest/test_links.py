"""What a click on a short link answers (R-T6.5, R-R4): the domain's table, and the routes with a fake store and
broker — headers, pages, counting, a failing database or broker → 503, never a 500."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import OperationalError

from ingest.adapters.kafka import EventPublisher
from ingest.adapters.links import decode_short_link
from ingest.adapters.links_http import LinkMetrics, build_links_router
from ingest.config import Settings
from ingest.domain.links import (
    Expired,
    LinkRules,
    Tampered,
    Verified,
    answer_code,
    answer_token,
    is_code,
    is_preview,
    origin,
    resume_token,
    verify_resume,
)
from scrm_common.clock import FixedClock
from scrm_common.contracts.envelope import PoisonMessage
from scrm_common.contracts.events import Contact
from scrm_common.contracts.links import ShortLink
from scrm_common.links import resume_url, short_code, short_url, sign_resume

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECRET = "test-link-secret"
BASE = "https://wa.shop.de"
RULES = LinkRules()
ANNA = Contact(external_id="cust-1")
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X)"
CHECKOUT = "https://shop.example/checkout/c-1?step=2"
PAYLOAD = {"t": "demo", "c": "c-1", "u": CHECKOUT, "k": "cart:c-1:stage1", "f": "abandoned_cart", "s": "stage1"}


def tracked(**changes: Any) -> ShortLink:
    fields: dict[str, Any] = {
        "code": short_code(SECRET, "demo", "order:1", "tracking"), "tenant": "demo", "kind": "tracked",
        "target": "https://carrier.example/track?id=42&utm_source=mail", "flow": "shipment", "content": "shipped",
        "idempotency_key": "order:1:shipped", "contact": ANNA, "created_at": NOW - timedelta(hours=1)}
    return ShortLink(**(fields | changes))


def resume(signed_at: datetime = NOW - timedelta(minutes=31), payload: dict[str, Any] | None = None,
           **changes: Any) -> ShortLink:
    token = sign_resume(SECRET, payload or PAYLOAD, signed_at)
    fields: dict[str, Any] = {
        "code": short_code(SECRET, "demo", PAYLOAD["k"], "resume"), "tenant": "demo", "kind": "resume",
        "target": resume_url(BASE, token), "flow": "abandoned_cart", "content": "stage1",
        "idempotency_key": PAYLOAD["k"], "contact": ANNA, "created_at": signed_at,
        "expires_at": signed_at + timedelta(hours=24)}
    return ShortLink(**(fields | changes))


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


# ---- the domain ---------------------------------------------------------------------------------------------

def test_a_tracked_link_redirects_with_utm_and_a_click_naming_the_message() -> None:
    answer = answer_code(tracked(), None, now=NOW, user_agent=BROWSER, probe=False, rules=RULES)
    assert (answer.status, answer.outcome, answer.kind) == (302, "redirected", "tracked")
    assert answer.location is not None and answer.location.startswith("https://carrier.example/track?")
    assert query(answer.location) == {"id": ["42"], "utm_source": ["whatsapp"], "utm_medium": ["message"],
                                      "utm_campaign": ["shipment"], "utm_content": ["shipped"]}  # R-R4
    assert answer.click is not None
    assert answer.click.tenant == "demo" and answer.click.contact == ANNA
    data = answer.click.data
    assert (data.link_id, data.url, data.idempotency_key, data.flow, data.campaign, data.content, data.kind) == (
        tracked().code, answer.location, "order:1:shipped", "shipment", "shipment", "shipped", "tracked")


def test_a_campaign_and_medium_of_the_link_win_over_the_flow() -> None:
    answer = answer_code(tracked(campaign="black-friday", medium="button"), None, now=NOW, user_agent=BROWSER,
                         probe=False, rules=RULES)
    assert answer.location is not None
    assert query(answer.location)["utm_campaign"] == ["black-friday"]
    assert query(answer.location)["utm_medium"] == ["button"]
    assert answer.click is not None and answer.click.data.campaign == "black-friday"


@pytest.mark.parametrize(("expires_in", "status", "outcome"), [
    (None, 302, "redirected"),
    (timedelta(seconds=1), 302, "redirected"),
    (timedelta(0), 410, "expired"),           # at expires_at the link is over
    (-timedelta(days=1), 410, "expired"),
])
def test_a_link_past_its_expiry_answers_410(expires_in: timedelta | None, status: int, outcome: str) -> None:
    link = tracked(expires_at=None if expires_in is None else NOW + expires_in)
    answer = answer_code(link, None, now=NOW, user_agent=BROWSER, probe=False, rules=RULES)
    assert (answer.status, answer.outcome) == (status, outcome)
    assert (answer.click is None) == (status != 302)
    if status == 410:
        assert answer.shop_url == "https://carrier.example"


def test_an_unknown_code_answers_404_without_a_click() -> None:
    answer = answer_code(None, None, now=NOW, user_agent=BROWSER, probe=False, rules=RULES)
    assert (answer.status, answer.outcome, answer.kind, answer.click, answer.location) == (
        404, "unknown", "unknown", None, None)


@pytest.mark.parametrize("code", ["", "abc", "abc-defg", "ab/cdefg", "a" * 23, "ÄÖÜabcde", "abcd efg"])
def test_malformed_codes_are_not_codes(code: str) -> None:
    assert not is_code(code)


@given(st.text(min_size=1, max_size=12), st.text(min_size=1, max_size=12))
def test_every_minted_code_is_a_code(tenant: str, key: str) -> None:
    code = short_code(SECRET, tenant, key, "resume")
    assert is_code(code) and len(short_url(BASE, code)) <= 30  # R-R4 with a 18-character base


@pytest.mark.parametrize(("agent", "preview"), [
    ("WhatsApp/2.23.20.0 A", True),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", True),
    ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", True),
    ("TelegramBot (like TwitterBot)", True),
    ("Twitterbot/1.0", True),
    ("whatsapp/2.24", True),                   # case does not matter
    (BROWSER, False),
    (None, False),
    ("", False),
])
def test_link_preview_fetchers_get_the_redirect_but_no_click(agent: str | None, preview: bool) -> None:
    assert is_preview(agent, RULES) is preview
    answer = answer_code(tracked(), None, now=NOW, user_agent=agent, probe=False, rules=RULES)
    assert answer.status == 302 and answer.location is not None
    assert answer.outcome == ("preview" if preview else "redirected")
    assert (answer.click is None) is preview


def test_a_head_request_is_a_probe_not_a_click() -> None:
    answer = answer_code(tracked(), None, now=NOW, user_agent=BROWSER, probe=True, rules=RULES)
    assert (answer.status, answer.outcome, answer.click) == (302, "preview", None)


def test_a_link_without_a_contact_redirects_without_a_click() -> None:
    answer = answer_code(tracked(contact=None), None, now=NOW, user_agent=BROWSER, probe=False, rules=RULES)
    assert (answer.status, answer.outcome, answer.click) == (302, "redirected", None)


# R-T6.5: a resume token is valid 24 h from its signature.
@pytest.mark.parametrize(("age", "expected"), [
    (timedelta(0), Verified),
    (timedelta(minutes=31), Verified),
    (timedelta(hours=24), Verified),
    (timedelta(hours=24, seconds=1), Expired),
    (timedelta(hours=25), Expired),
    (timedelta(days=30), Expired),
])
def test_a_resume_token_holds_24_hours(age: timedelta, expected: type) -> None:
    result = verify_resume(SECRET, sign_resume(SECRET, PAYLOAD, NOW - age), NOW, RULES)
    assert isinstance(result, expected)
    if isinstance(result, Verified):
        assert (result.tenant, result.url, result.key, result.flow, result.content) == (
            "demo", CHECKOUT, PAYLOAD["k"], "abandoned_cart", "stage1")
    else:
        assert result == Expired(shop_url="https://shop.example")


def test_the_token_age_is_a_setting() -> None:
    token = sign_resume(SECRET, PAYLOAD, NOW - timedelta(hours=2))
    assert isinstance(verify_resume(SECRET, token, NOW, LinkRules(resume_max_age_seconds=3600)), Expired)
    assert Settings(link_resume_max_age_seconds=3600).link_rules.resume_max_age_seconds == 3600
    assert Settings().link_rules == LinkRules()


def _flip(token: str, at: int) -> str:
    return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1:]


@pytest.mark.parametrize("token", [
    _flip(sign_resume(SECRET, PAYLOAD, NOW), 5),                         # the payload changed
    _flip(sign_resume(SECRET, PAYLOAD, NOW), -3),                        # the signature changed
    sign_resume("another-secret", PAYLOAD, NOW),                         # signed by someone else
    sign_resume(SECRET, PAYLOAD, NOW)[:-6],                              # cut short
    "not-a-token",
    "",
    sign_resume(SECRET, PAYLOAD | {"u": "javascript:alert(1)"}, NOW),    # ours, but no http(s) URL to go to
    sign_resume(SECRET, {k: v for k, v in PAYLOAD.items() if k != "t"}, NOW),  # names no tenant
])
def test_a_tampered_token_answers_400_and_publishes_nothing(token: str) -> None:
    verification = verify_resume(SECRET, token, NOW, RULES)
    assert verification == Tampered()
    answer = answer_token(verification, resume(), user_agent=BROWSER, probe=False, rules=RULES)
    assert (answer.status, answer.outcome, answer.kind, answer.click, answer.location) == (
        400, "tampered", "resume", None, None)


def test_a_resume_short_link_redirects_to_the_checkout_url_with_utm() -> None:
    link = resume()
    verification = verify_resume(SECRET, resume_token(link.target), NOW, RULES)
    answer = answer_code(link, verification, now=NOW, user_agent=BROWSER, probe=False, rules=RULES)
    assert (answer.status, answer.outcome, answer.kind) == (302, "redirected", "resume")
    assert answer.location is not None and answer.location.startswith("https://shop.example/checkout/c-1?")
    assert query(answer.location) == {"step": ["2"], "utm_source": ["whatsapp"], "utm_medium": ["message"],
                                      "utm_campaign": ["abandoned_cart"], "utm_content": ["stage1"]}
    assert answer.click is not None and answer.click.contact == ANNA
    assert answer.click.data.idempotency_key == PAYLOAD["k"] and answer.click.data.kind == "resume"


def test_an_expired_resume_link_lands_on_410_with_the_shop() -> None:
    link = resume(signed_at=NOW - timedelta(hours=25))
    verification = verify_resume(SECRET, resume_token(link.target), NOW, RULES)
    answer = answer_code(link, verification, now=NOW, user_agent=BROWSER, probe=False, rules=RULES)
    assert (answer.status, answer.outcome, answer.kind, answer.click) == (410, "expired", "resume", None)
    assert answer.shop_url == "https://shop.example"


def test_a_token_of_another_tenant_than_its_link_is_tampered() -> None:
    link = resume(payload=PAYLOAD | {"t": "other"})
    verification = verify_resume(SECRET, resume_token(link.target), NOW, RULES)
    answer = answer_code(link, verification, now=NOW, user_agent=BROWSER, probe=False, rules=RULES)
    assert (answer.status, answer.outcome, answer.click) == (400, "tampered", None)


def test_the_long_form_clicks_only_when_its_short_link_is_known() -> None:
    verification = verify_resume(SECRET, sign_resume(SECRET, PAYLOAD, NOW), NOW, RULES)
    known = answer_token(verification, resume(), user_agent=BROWSER, probe=False, rules=RULES)
    unknown = answer_token(verification, None, user_agent=BROWSER, probe=False, rules=RULES)
    assert known.status == unknown.status == 302 and known.location == unknown.location
    assert known.click is not None and unknown.click is None


@pytest.mark.parametrize(("url", "expected"), [
    ("https://shop.example/checkout?x=1", "https://shop.example"),
    ("http://localhost:8090/cart", "http://localhost:8090"),
    ("javascript:alert(1)", None),
    ("/relative", None),
])
def test_the_shop_is_the_origin_of_an_http_url(url: str, expected: str | None) -> None:
    assert origin(url) == expected


# ---- the consumer's decoding ---------------------------------------------------------------------------------

class _Record:
    def __init__(self, value: bytes, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        self.value, self.headers = value, list(headers)


def test_a_short_link_record_decodes_and_garbage_is_poison() -> None:
    link = tracked()
    raw = link.model_dump_json(exclude_none=True).encode()
    assert decode_short_link(_Record(raw, [("tenant", b"demo")])) == link  # type: ignore[arg-type]
    for bad in (b"not json", b"{}", json.dumps({"code": "x"}).encode(), b""):
        with pytest.raises(PoisonMessage):
            decode_short_link(_Record(bad))  # type: ignore[arg-type]
    with pytest.raises(PoisonMessage):
        decode_short_link(_Record(raw, [("tenant", b"other")]))  # type: ignore[arg-type]


# ---- the routes ----------------------------------------------------------------------------------------------

class Store:
    """The `short_links` table in memory; `fail` makes every read raise like a lost database."""

    def __init__(self, *links: ShortLink) -> None:
        self.links = {link.code: link for link in links}
        self.fail = False

    async def by_code(self, code: str) -> ShortLink | None:
        if self.fail:
            raise OperationalError("SELECT", {}, ConnectionRefusedError("database away"))
        return self.links.get(code)

    async def resume_of(self, tenant: str, key: str) -> ShortLink | None:
        if self.fail:
            raise OperationalError("SELECT", {}, ConnectionRefusedError("database away"))
        return next((x for x in self.links.values()
                     if x.tenant == tenant and x.idempotency_key == key and x.kind == "resume"), None)


class Broker:
    """The producer: records what was sent; `fail` refuses like an unreachable broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.fail = False

    async def send(self, topic: str, *, key: bytes, value: bytes, headers: Sequence[Any]) -> Any:
        if self.fail:
            raise KafkaConnectionError("broker away")
        self.sent.append((topic, key, value, list(headers)))

        async def done() -> None:
            return None

        return done()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(v) for _, _, v, _ in self.sent]


def _client(store: Store, broker: Broker, registry: CollectorRegistry) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(build_links_router(store=store, publisher=EventPublisher(broker),  # type: ignore[arg-type]
                                          clock=FixedClock(NOW), metrics=LinkMetrics(registry), secret=SECRET,
                                          rules=RULES, publish_timeout_seconds=2.0))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://ingest", headers={"User-Agent": BROWSER})


def counted(registry: CollectorRegistry, kind: str, outcome: str) -> float:
    return registry.get_sample_value("scrm_ingest_link_redirects_total", {"kind": kind, "outcome": outcome}) or 0.0


def _private(resp: httpx.Response) -> None:
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["referrer-policy"] == "no-referrer"


async def test_the_route_redirects_publishes_and_counts() -> None:
    link, registry, broker = tracked(), CollectorRegistry(), Broker()
    async with _client(Store(link), broker, registry) as client:
        resp = await client.get(f"/l/{link.code}")
        assert resp.status_code == 302, resp.text
        _private(resp)
        assert query(resp.headers["location"])["utm_source"] == ["whatsapp"]
        [(topic, key, _, headers)] = broker.sent
        assert topic == "scrm.events.v1" and key == b"demo:cust-1" and ("tenant", b"demo") in headers
        [event] = broker.events()
        assert event["type"] == "link.clicked" and event["contact"] == {"external_id": "cust-1"}
        assert event["data"]["url"] == resp.headers["location"]
        assert event["data"]["idempotency_key"] == "order:1:shipped"
        assert counted(registry, "tracked", "redirected") == 1

        second = await client.get(f"/l/{link.code}")  # every click is its own event
        assert second.status_code == 302
        assert len({e["event_id"] for e in broker.events()}) == 2

        head = await client.head(f"/l/{link.code}")
        assert head.status_code == 302 and len(broker.sent) == 2
        preview = await client.get(f"/l/{link.code}", headers={"User-Agent": "WhatsApp/2.23.20.0 A"})
        assert preview.status_code == 302 and len(broker.sent) == 2
        assert counted(registry, "tracked", "preview") == 2


@pytest.mark.parametrize("code", ["zzzzzzzz", "bad-code", "a" * 40])
async def test_unknown_and_malformed_codes_get_a_friendly_404(code: str) -> None:
    registry, broker = CollectorRegistry(), Broker()
    async with _client(Store(tracked()), broker, registry) as client:
        resp = await client.get(f"/l/{code}")
    assert resp.status_code == 404 and resp.headers["content-type"].startswith("text/html")
    assert "Link not found" in resp.text
    _private(resp)
    assert broker.sent == [] and counted(registry, "unknown", "unknown") == 1


async def test_expired_and_tampered_resume_answers_are_pages_and_publish_nothing() -> None:
    registry, broker = CollectorRegistry(), Broker()
    old = resume(signed_at=NOW - timedelta(hours=25))
    async with _client(Store(old), broker, registry) as client:
        expired = await client.get(f"/l/{old.code}")
        assert expired.status_code == 410 and "expired" in expired.text
        assert 'href="https://shop.example"' in expired.text
        _private(expired)
        long_expired = await client.get(f"/r/{resume_token(old.target)}")
        assert long_expired.status_code == 410
        tampered = await client.get(f"/r/{_flip(sign_resume(SECRET, PAYLOAD, NOW), 5)}")
        assert tampered.status_code == 400 and "not valid" in tampered.text
        _private(tampered)
    assert broker.sent == []
    assert counted(registry, "resume", "expired") == 2 and counted(registry, "resume", "tampered") == 1


async def test_the_long_form_redirects_and_clicks_for_the_known_message() -> None:
    registry, broker = CollectorRegistry(), Broker()
    link = resume()
    async with _client(Store(link), broker, registry) as client:
        resp = await client.get(f"/r/{resume_token(link.target)}")
    assert resp.status_code == 302 and resp.headers["location"].startswith(CHECKOUT.split("?")[0])
    [event] = broker.events()
    assert event["data"]["idempotency_key"] == PAYLOAD["k"] and event["data"]["kind"] == "resume"


@pytest.mark.parametrize("broken", ["store", "broker"])
async def test_a_failing_database_or_broker_is_a_503_page_never_a_500(broken: str) -> None:
    registry, broker, store = CollectorRegistry(), Broker(), Store(tracked(), resume())
    (store if broken == "store" else broker).fail = True
    async with _client(store, broker, registry) as client:
        for path in (f"/l/{tracked().code}", f"/r/{resume_token(resume().target)}"):
            resp = await client.get(path)
            assert resp.status_code == 503, (path, resp.text)
            assert resp.headers["retry-after"] == str(RULES.retry_after_seconds)
            assert "try again" in resp.text
            _private(resp)
    assert broker.sent == []
    assert counted(registry, "unknown", "unavailable") == 1 and counted(registry, "resume", "unavailable") == 1


async def test_a_link_cut_short_gets_the_friendly_404_page_and_publishes_nothing() -> None:
    registry, broker = CollectorRegistry(), Broker()
    async with _client(Store(), broker, registry) as client:
        for path in ("/l/", "/r/"):
            resp = await client.get(path)
            assert resp.status_code == 404 and resp.headers["content-type"].startswith("text/html"), resp.text
            _private(resp)
    assert broker.sent == []
    assert counted(registry, "unknown", "unknown") == 1 and counted(registry, "resume", "unknown") == 1
