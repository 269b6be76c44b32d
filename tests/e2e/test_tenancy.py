"""Issue 7 acceptance on one stack: two tenants made through the `scrm` CLI, each with its own WhatsApp number on
the simulator, its own synced templates and its own keys.

- A payment posted with each tenant's events key is confirmed from that tenant's number, and each read key sees
  only its own contact, decisions, messages and overview.
- Roles: an events key cannot read, a read key cannot write, a revoked key gets 401 from every service within
  the key cache's bound (this stack runs with SCRM_KEY_CACHE_SECONDS=2).
- Isolation, walked exhaustively: every operation of every service's OpenAPI declares `x-scrm-roles`; each is
  called with the other tenant's keys of every role, its path naming the first tenant's real resources: the
  allowed roles get 404 or an empty answer — never the first tenant's data —, the others 403, and nothing of
  either tenant changes.
- Last: no access token, tenant key or installation secret appears in any log line, /metrics or answer of the
  whole module.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from scrm_common.contracts import topics
from scrm_common.contracts.events import PLATFORM_PRODUCED
from scrm_stack.stack import SERVICES
from tests.support.backend import Backend
from tests.support.events import contact_created, new_id, new_order, new_phone, payment, sign, status, status_webhook
from tests.support.stack import TestStack, poll, start_stack

KEY_CACHE_SECONDS = 2.0
REVOCATION_MARGIN = 6.0  # request round trips on a loaded 2-core machine, on top of the cache's bound
ROLES = ("events", "read", "admin")
OPS_PATHS = {"/healthz", "/readyz", "/metrics"}
PAYMENT_CONSUMERS = {"trigger-engine", "segmenter", "reporting"}
SIM_TOKENS = "sim-token"  # the simulator's access tokens all start so: sim-token (bootstrap), sim-token-2, -3


@dataclass
class Tenant:
    """A tenant of this module and what the tests learn about it."""

    name: str
    account_id: str
    waba_id: str
    access_token: str
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # role → KeyIssued
    contact: str = ""  # the paying customer's external id
    phone: str = ""
    order: str = ""
    event_id: str = ""
    message_key: str = ""  # the confirmation's idempotency key
    wamid: str = ""
    dead_letter_id: str = ""
    poison_event_id: str = ""  # the event of the dead letter

    def key(self, role: str) -> str:
        return str(self.keys[role]["key"])

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key(role)}"}

    def identifiers(self) -> dict[str, str]:
        """What only this tenant's data contains: none of it may reach the other tenant."""
        found = {"tenant name": self.name, "contact": self.contact, "phone": self.phone.lstrip("+"),
                 "order": self.order, "event id": self.event_id, "message key": self.message_key,
                 "wamid": self.wamid, "dead letter id": self.dead_letter_id,
                 "dead letter's event id": self.poison_event_id, "account": self.account_id,
                 "waba": self.waba_id}
        for role, issued in self.keys.items():
            found[f"{role} key id"] = str(issued["id"])
            if len(prefix := str(issued.get("prefix") or "")) > 8:  # a shorter one could match by chance
                found[f"{role} key prefix"] = prefix
        # an identifier short enough to occur by chance (a dead letter's number) is checked by its route alone
        return {label: value for label, value in found.items() if len(value) >= 6}


ACME = Tenant("acme", "100000000000002", "200000000000002", "sim-token-2")
GLOBEX = Tenant("globex", "100000000000003", "200000000000003", "sim-token-3")


@pytest.fixture(scope="module")
def stack(backend: Backend, work_dir: Path) -> Iterator[TestStack]:
    started = start_stack(work_dir, backend, env={"SCRM_KEY_CACHE_SECONDS": str(KEY_CACHE_SECONDS)},
                          record_responses=True)
    yield started
    started.close()


def _ok(run: Any, what: str) -> str:
    assert run.returncode == 0, f"`scrm {what}` exited {run.returncode}:\nstdout: {run.stdout[-2000:]}\n" \
                                f"stderr: {run.stderr[-2000:]}"
    return str(run.stdout)


def _json_out(run: Any, what: str) -> Any:
    out = _ok(run, what)
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        raise AssertionError(f"`scrm {what} --json` printed no JSON: {out[:1000]!r}") from None


@pytest.fixture(scope="module")
def tenants(stack: TestStack) -> tuple[Tenant, Tenant]:
    """Both tenants made as a new operator and tenant admin would, through the CLI only."""
    for tenant in (ACME, GLOBEX):
        _ok(stack.scrm("tenants", "create", tenant.name, operator=True), f"tenants create {tenant.name}")
        for role in ROLES:
            issued = _json_out(stack.scrm("keys", "issue", "--tenant", tenant.name, "--role", role, "--label",
                                          f"e2e {role}", "--json", operator=True),
                               f"keys issue --tenant {tenant.name} --role {role}")
            assert issued["role"] == role and str(issued["key"]).startswith("scrm_"), issued
            tenant.keys[role] = issued
        admin = tenant.key("admin")
        _ok(stack.scrm("accounts", "add", "--phone-number-id", tenant.account_id, "--waba-id", tenant.waba_id,
                       "--token-env", "E2E_ACCESS_TOKEN", "--display-name", tenant.name.upper(), key=admin,
                       env={"E2E_ACCESS_TOKEN": tenant.access_token}),
            f"accounts add --phone-number-id {tenant.account_id}")
        _ok(stack.scrm("templates", "sync", key=admin), "templates sync")
    listed = _ok(stack.scrm("tenants", "list", "--json", operator=True), "tenants list --json")
    assert ACME.name in listed and GLOBEX.name in listed
    return ACME, GLOBEX


def _sim_messages_to(stack: TestStack, phone: str) -> list[dict[str, Any]]:
    return [m for m in stack.sim_messages() if m["to"].lstrip("+") == phone.lstrip("+")]


def _decisions(stack: TestStack, tenant: Tenant, contact: str) -> httpx.Response:
    return stack.http.get(stack.url("trigger-engine", f"/v1/contacts/{contact}/decisions"), headers=tenant.auth("read"))


def _produce_poison(stack: TestStack, tenant: str, contact: str, event_id: str) -> None:
    """A payment of `tenant` on the event log no consumer can read (its amount is no number)."""
    value = json.dumps({"event_id": event_id, "type": "payment.succeeded", "occurred_at": "2026-11-30T10:00:00Z",
                        "contact": {"external_id": contact},
                        "data": {"order_id": "P1", "amount": "lots", "currency": "EUR"}}).encode()

    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.stack.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topics.EVENTS, key=f"{tenant}:{contact}".encode(), value=value,
                                         headers=[("tenant", tenant.encode()), ("type", b"payment.succeeded")])
        finally:
            await producer.stop()

    asyncio.run(go())


@pytest.fixture(scope="module")
def traffic(stack: TestStack, tenants: tuple[Tenant, Tenant]) -> tuple[Tenant, Tenant]:
    """One payment per tenant, posted with its events key and confirmed at the simulator; one dead letter of
    the first tenant. Every field the tests compare is filled in."""
    for tenant in tenants:
        tenant.contact, tenant.phone, tenant.order = new_id("cust"), new_phone(), new_order()
        event = payment(order_id=tenant.order, phone=tenant.phone, external_id=tenant.contact)
        tenant.event_id = event["event_id"]
        resp = stack.post_events(event, key=tenant.key("events"))
        assert resp.status_code == 202, (tenant.name, resp.text)
    for tenant in tenants:
        [message] = poll(lambda t=tenant: _sim_messages_to(stack, t.phone), timeout=60,
                         what=f"{tenant.name}'s confirmation at the simulator")
        tenant.wamid = message["wamid"]
        sent = poll(lambda t=tenant: [d for d in _decisions(stack, t, t.contact).json().get("decisions", [])
                                      if d["outcome"] == "send"], timeout=30, what=f"{tenant.name}'s send decision")
        tenant.message_key = sent[0]["idempotency_key"]
    acme = tenants[0]
    acme.poison_event_id = new_id("poison")
    _produce_poison(stack, acme.name, new_id("cust"), acme.poison_event_id)  # another contact: test 1 reads acme's

    def acme_dead_letters() -> list[dict[str, Any]] | None:
        resp = stack.http.get(stack.url("reporting", "/v1/dead-letters"), headers=acme.auth("read"))
        letters = resp.json().get("dead_letters", []) if resp.status_code == 200 else []
        # settled once every consumer of payments gave up on it (the walk compares snapshots of acme's state)
        return letters if {d["service"] for d in letters} >= PAYMENT_CONSUMERS else None

    acme.dead_letter_id = str(poll(acme_dead_letters, timeout=120, interval=0.5,
                                   what="acme's dead letter from every consumer of payments")[0]["id"])
    return tenants


# ---------------------------------------------------------------------------------------------------------------
# 1. Two tenants, each confirmed from its own number, each seeing only its own data
# ---------------------------------------------------------------------------------------------------------------


def test_each_tenants_payment_is_confirmed_from_its_own_number_and_seen_only_by_its_own_keys(
        stack: TestStack, traffic: tuple[Tenant, Tenant]) -> None:
    for tenant, other in (traffic, traffic[::-1]):
        [message] = _sim_messages_to(stack, tenant.phone)
        assert message["phone_number_id"] == tenant.account_id, (tenant.name, message)
        assert message["template"]["name"] == "order_confirmation"
        assert message["template"]["parameters"][0] == tenant.order

        # sender: its own WABA's templates, synced
        templates = stack.http.get(stack.url("sender", "/v1/templates"), headers=tenant.auth("read")).json()["templates"]
        assert {(t["name"], t["status"]) for t in templates} >= {("order_confirmation", "APPROVED")}, templates
        assert {t.get("waba_id") for t in templates} == {tenant.waba_id}, templates

        # segmenter: its own contact, not the other's
        own = stack.http.get(stack.url("segmenter", f"/v1/contacts/{tenant.contact}"), headers=tenant.auth("read"))
        assert own.status_code == 200, (tenant.name, own.text)
        foreign = stack.http.get(stack.url("segmenter", f"/v1/contacts/{other.contact}"), headers=tenant.auth("read"))
        assert foreign.status_code == 404, (tenant.name, foreign.text)

        # trigger-engine: its own decisions; the other's contact is nobody it knows
        assert [d["event_id"] for d in _decisions(stack, tenant, tenant.contact).json()["decisions"]] \
            == [tenant.event_id]
        foreign = _decisions(stack, tenant, other.contact)
        assert foreign.status_code == 404 or foreign.json()["decisions"] == [], (tenant.name, foreign.text)

        # sender: its own message in its log, the other's nowhere
        log = stack.http.get(stack.url("sender", "/v1/messages"), headers=tenant.auth("read"))
        assert log.status_code == 200, log.text
        assert {m["idempotency_key"] for m in log.json()["messages"]} == {tenant.message_key}
        assert {m["account_id"] for m in log.json()["messages"]} == {tenant.account_id}
        by_contact = stack.http.get(stack.url("sender", "/v1/messages"), params={"contact": other.contact},
                                    headers=tenant.auth("read"))
        assert by_contact.status_code in (200, 404) and not by_contact.json().get("messages"), by_contact.text
        foreign = stack.http.get(stack.url("sender", f"/v1/messages/{other.message_key}"), headers=tenant.auth("read"))
        assert foreign.status_code == 404, (tenant.name, foreign.text)

        # reporting: its own confirmation, sent and delivered (the status webhook routed to the right tenant)
        def overview(t: Tenant = tenant) -> dict[str, Any] | None:
            body = stack.http.get(stack.url("reporting", "/v1/reports/overview"), headers=t.auth("read")).json()
            totals = body.get("totals", {})
            return body if (totals.get("sent"), totals.get("delivered")) == (1, 1) else None

        seen = poll(overview, timeout=60, interval=0.5, what=f"{tenant.name}'s overview: its one confirmation "
                                                              "sent and delivered, nothing of the other tenant")
        assert seen["tenant"] == tenant.name


# ---------------------------------------------------------------------------------------------------------------
# 2. Roles
# ---------------------------------------------------------------------------------------------------------------


def _specs(stack: TestStack) -> dict[str, dict[str, Any]]:
    return {service: stack.http.get(stack.url(service, "/openapi.json")).json() for service in SERVICES}


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for template, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method in ("get", "post", "put", "patch", "delete") and template not in OPS_PATHS:
                yield template, method, operation


def _tenant_roles(operation: dict[str, Any]) -> set[str] | None:
    """The tenant roles an operation admits; None when it is no tenant-key route (operator, webhook)."""
    roles = set(operation.get("x-scrm-roles") or [])
    tenant_roles = roles & set(ROLES)
    return tenant_roles or None


def test_an_events_key_cannot_read_and_a_read_key_cannot_change_anything(
        stack: TestStack, traffic: tuple[Tenant, Tenant]) -> None:
    acme, globex = traffic
    refused: dict[str, int] = {}
    for service, spec in _specs(stack).items():
        for template, method, operation in _operations(spec):
            roles = _tenant_roles(operation)
            if roles is None:
                continue
            role = "events" if method == "get" else "read"
            assert role not in roles, f"{service} {method.upper()} {template} admits a {role} key: {sorted(roles)}"
            url = stack.url(service, _fill(template, globex, acme))
            resp = stack.http.request(method.upper(), url, headers=globex.auth(role),
                                      **_body(stack, service, method, template, globex, acme))
            refused[f"{service} {method.upper()} {template} ({role})"] = resp.status_code
            if resp.status_code == 403:
                assert resp.json()["error"]["code"] == "forbidden", resp.text
    wrong = {what: status for what, status in refused.items() if status != 403}
    assert not wrong, f"not refused with 403: {wrong}"
    assert any("POST /v1/events (read)" in what for what in refused)
    # and the read key's payment changed nothing: no contact, no decision for it
    phone = new_phone()
    resp = stack.post_events(payment(order_id=new_order(), phone=phone), key=globex.key("read"))
    assert resp.status_code == 403, resp.text
    assert _decisions(stack, globex, phone).json().get("decisions", []) == []


def _probe(stack: TestStack, key: str, *, said: str | None = None) -> dict[str, int]:
    """One tenant request per service with `key`: service → status (`said`: the status only where the error
    message contains it, else -1)."""
    auth = {"Authorization": f"Bearer {key}"}
    answers = {
        "ingest": stack.http.get(stack.url("ingest", "/v1/keys"), headers=auth),
        "trigger-engine": stack.http.get(stack.url("trigger-engine", "/v1/flows"), headers=auth),
        "sender": stack.http.get(stack.url("sender", "/v1/messages"), headers=auth),
        "segmenter": stack.http.get(stack.url("segmenter", "/v1/settings/currency"), headers=auth),
        "reporting": stack.http.get(stack.url("reporting", "/v1/reports/overview"), headers=auth),
    }
    return {service: resp.status_code if said is None or said in resp.text else -1
            for service, resp in answers.items()}


def test_a_revoked_key_gets_401_from_every_service_within_the_key_cache_bound(
        stack: TestStack, tenants: tuple[Tenant, Tenant]) -> None:
    _acme, globex = tenants
    issued = _json_out(stack.scrm("keys", "issue", "--role", "admin", "--label", "to revoke", "--json",
                                  key=globex.key("admin")), "keys issue --role admin (tenant admin)")
    # every service has seen it valid, so each holds it in its cache
    assert _probe(stack, issued["key"]) == dict.fromkeys(SERVICES, 200)
    listed = stack.http.get(stack.url("ingest", "/v1/keys"), headers=globex.auth("admin")).json()["keys"]
    assert issued["id"] in {k["id"] for k in listed}
    assert all(issued["key"] not in json.dumps(k) for k in listed)

    resp = stack.http.delete(stack.url("ingest", f"/v1/keys/{issued['id']}"), headers=globex.auth("admin"))
    assert resp.status_code == 204, resp.text
    revoked_at = time.monotonic()
    bound = KEY_CACHE_SECONDS + REVOCATION_MARGIN
    seen = poll(lambda: (p := _probe(stack, issued["key"])) == dict.fromkeys(SERVICES, 401) and p,
                timeout=bound, interval=0.2, what=f"401 from every service within {bound}s of the revocation")
    elapsed = time.monotonic() - revoked_at
    assert seen and elapsed <= bound
    assert stack.post_events(contact_created(phone=new_phone()), key=issued["key"]).status_code == 401
    # the other keys of the tenant still work
    assert _probe(stack, globex.key("admin")) == dict.fromkeys(SERVICES, 200)


def test_a_disabled_tenants_keys_get_401_everywhere_within_the_bound_and_work_again_once_enabled(
        stack: TestStack) -> None:
    name = "initech"
    _ok(stack.scrm("tenants", "create", name, operator=True), f"tenants create {name}")
    issued = _json_out(stack.scrm("keys", "issue", "--tenant", name, "--role", "admin", "--json", operator=True),
                       f"keys issue --tenant {name}")
    assert _probe(stack, issued["key"]) == dict.fromkeys(SERVICES, 200)
    bound = KEY_CACHE_SECONDS + REVOCATION_MARGIN
    _ok(stack.scrm("tenants", "disable", name, operator=True), f"tenants disable {name}")
    poll(lambda: _probe(stack, issued["key"], said="tenant is disabled") == dict.fromkeys(SERVICES, 401),
         timeout=bound, interval=0.2, what=f"401 'tenant is disabled' from every service within {bound}s")
    _ok(stack.scrm("tenants", "enable", name, operator=True), f"tenants enable {name}")
    poll(lambda: _probe(stack, issued["key"]) == dict.fromkeys(SERVICES, 200), timeout=bound, interval=0.2,
         what=f"the key working again within {bound}s of enabling the tenant")


@pytest.mark.parametrize(("event_type", "data"), [
    ("message.status", {"message_id": "wamid.e2e-forged", "status": "delivered"}),
    ("link.clicked", {"link_id": "l-e2e", "url": "https://shop.example/forged"}),
])
def test_a_shop_key_cannot_post_what_the_platform_produces(stack: TestStack, tenants: tuple[Tenant, Tenant],
                                                           event_type: str, data: dict[str, Any]) -> None:
    _acme, globex = tenants
    assert event_type in PLATFORM_PRODUCED
    event = {**contact_created(phone=new_phone()), "type": event_type, "data": data}  # valid as an event
    for role in ("events", "admin"):
        resp = stack.post_events(event, key=globex.key(role))
        assert resp.status_code == 422, (role, resp.text)
        assert event_type in resp.text, (role, resp.text)


def _skipped(stack: TestStack, reason: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(
        rf'^scrm_ingest_webhook_skipped_total\{{[^}}]*reason="{reason}"[^}}]*\}} (\S+)$', stack.metrics("ingest"), re.M))


def test_a_webhook_for_a_number_nobody_owns_is_acknowledged_counted_and_logged(stack: TestStack,
                                                                               traffic: tuple[Tenant, Tenant]) -> None:
    nobodys = "100000000000099"
    before = _skipped(stack, "unknown_number")
    raw = status_webhook(phone_number_id=nobodys, statuses=[
        status(traffic[0].wamid, "read", traffic[0].phone, datetime.now(UTC))])
    resp = stack.http.post(stack.url("ingest", "/v1/webhooks/whatsapp"), content=raw,
                           headers={"X-Hub-Signature-256": sign(stack.app_secret, raw),
                                    "Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert _skipped(stack, "unknown_number") == before + 1
    log = (stack.stack.root / "logs" / "ingest.log").read_text(errors="replace")
    assert nobodys in log


# ---------------------------------------------------------------------------------------------------------------
# 3. Isolation walk
# ---------------------------------------------------------------------------------------------------------------


def _value_for(name: str, template: str, victim: Tenant) -> str:
    """A path or query value naming the victim's real resource where the route names one."""
    name = name.lower()
    if "dead-letters" in template and name in ("id", "dead_letter_id", "letter_id"):
        return victim.dead_letter_id
    if "keys" in template and name in ("id", "key_id"):
        return str(victim.keys["read"]["id"])
    by_name = {"contact": victim.contact, "account_id": victim.account_id, "idempotency_key": victim.message_key,
               "phone": victim.phone, "tenant": victim.name, "flow": "order_confirmation", "waba_id": victim.waba_id,
               "name": "order_confirmation", "template": "order_confirmation", "key": victim.message_key,
               "wamid": victim.wamid, "event_id": victim.event_id}
    return by_name.get(name, "walk-value")


def _fill(template: str, caller: Tenant, victim: Tenant) -> str:
    del caller
    return re.sub(r"\{([^}:]+)(?::[^}]*)?\}", lambda m: _value_for(m.group(1), template, victim), template)


def _query(operation: dict[str, Any], template: str, victim: Tenant) -> dict[str, str]:
    params: dict[str, str] = {}
    for param in operation.get("parameters", []):
        if param["in"] != "query":
            continue
        value = _value_for(param["name"], template, victim)
        if value != "walk-value":
            params[param["name"]] = value
        elif param.get("required"):
            schema = param.get("schema", {})
            params[param["name"]] = "1" if schema.get("type") in ("integer", "number") else "walk-value"
    return params


def _body(stack: TestStack, service: str, method: str, template: str, caller: Tenant,
          victim: Tenant) -> dict[str, Any]:
    """Request kwargs of a minimal valid write: the caller's own data, pointed at the victim's resources."""
    if method in ("get", "delete"):
        return {}
    path = _fill(template, caller, victim)
    bodies: dict[str, Any] = {
        "/v1/events": contact_created(phone=new_phone(), external_id=new_id("walk")),
        "/v1/keys": {"role": "read", "label": "walk"},
        "/v1/accounts": {"account_id": victim.account_id, "waba_id": victim.waba_id,
                         "access_token": caller.access_token},
        "/v1/templates/sync": {"account_id": victim.account_id},
        "/v1/admin/tenants": {"tenant": "walk-tenant"},
    }
    if template in bodies:
        return {"json": bodies[template]}
    if method in ("put", "patch"):
        # the caller's own current object, sent back as it is (a no-op for a PUT that replaces)
        current = stack.http.get(stack.url(service, path), headers=caller.auth("admin"))
        if current.status_code == 200:
            body = current.json()
            return {"json": body.get("settings", body) if isinstance(body, dict) else body}
        if "accounts" in template:
            return {"json": {"display_name": "walk"}}
    return {"json": {}}


def _snapshot(stack: TestStack, tenant: Tenant, *, configuration_only: bool = False) -> dict[str, Any]:
    """Everything the tenant owns, as its admin key reads it (use-times left out: reading uses the key).
    `configuration_only`: without its customers' data (which the walk's own accepted events may still change)."""
    reads = [("ingest", "/v1/keys"), ("trigger-engine", "/v1/flows"), ("trigger-engine", "/v1/settings"),
             ("trigger-engine", "/v1/flows/order_confirmation/history"),
             ("sender", "/v1/accounts"), ("sender", "/v1/templates"),
             ("sender", "/v1/invalid-numbers"), ("segmenter", "/v1/settings/currency")]
    if not configuration_only:
        reads += [("trigger-engine", f"/v1/contacts/{tenant.contact}/decisions"), ("sender", "/v1/messages"),
                  ("segmenter", f"/v1/contacts/{tenant.contact}"), ("reporting", "/v1/dead-letters")]
    state: dict[str, Any] = {}
    for service, path in reads:
        resp = stack.http.get(stack.url(service, path), headers=tenant.auth("admin"))
        text = re.sub(r'"last_used_at":\s*("[^"]*"|null)', '"last_used_at": "-"', resp.text)
        text = re.sub(r'"activity":\s*\{[^}]*\}', '"activity": "-"', text)  # "as of now"
        state[f"{service} {path}"] = (resp.status_code, text)
    tenant_row = stack.http.get(stack.url("ingest", f"/v1/admin/tenants/{tenant.name}"),
                                headers={"Authorization": f"Bearer {stack.stack.secrets['SCRM_ADMIN_TOKEN']}"})
    state["ingest tenant"] = (tenant_row.status_code, tenant_row.text)
    return state


def _diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [f"{what}: {before[what]!s:.400} → {after.get(what)!s:.400}" for what in before
            if before[what] != after.get(what)]


def _leaks(resp: httpx.Response, victim: Tenant, sent: str) -> list[str]:
    """The victim's identifiers in the answer that the request itself did not carry."""
    return [f"{label} {value!r}" for label, value in victim.identifiers().items()
            if value in resp.text and value not in sent]


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_declares_the_roles_it_needs(stack: TestStack, service: str) -> None:
    spec = stack.http.get(stack.url(service, "/openapi.json")).json()
    undeclared = [f"{m.upper()} {t}" for t, m, op in _operations(spec) if not op.get("x-scrm-roles")]
    assert not undeclared, f"{service}: operations without x-scrm-roles: {undeclared}"


@pytest.mark.parametrize("service", SERVICES)
def test_isolation_walk_a_foreign_tenants_keys_never_see_or_change_its_data(
        stack: TestStack, traffic: tuple[Tenant, Tenant], service: str) -> None:
    victim, caller = traffic
    spec = stack.http.get(stack.url(service, "/openapi.json")).json()
    operations = list(_operations(spec))
    assert operations
    problems: list[str] = []
    calls = 0

    def call(template: str, method: str, operation: dict[str, Any], role: str) -> tuple[httpx.Response, str]:
        nonlocal calls
        calls += 1
        path = _fill(template, caller, victim)
        params = _query(operation, template, victim)
        kwargs = _body(stack, service, method, template, caller, victim)
        resp = stack.http.request(method.upper(), stack.url(service, path), params=params,
                                  headers=caller.auth(role), **kwargs)
        sent = unquote(str(resp.request.url)) + json.dumps(kwargs.get("json"))
        return resp, sent

    # Pass 1: every role an operation does not admit → 403 (or 401/403 on operator and webhook routes),
    # and neither tenant's state changes.
    def both() -> dict[str, Any]:
        return {victim.name: _snapshot(stack, victim), caller.name: _snapshot(stack, caller, configuration_only=True)}

    before = both()
    for template, method, operation in operations:
        admitted = _tenant_roles(operation) or set()
        for role in ROLES:
            if role in admitted:
                continue
            resp, sent = call(template, method, operation, role)
            label = f"{method.upper()} {template} with {caller.name}'s {role} key"
            expected = {403} if admitted else {401, 403}
            if not admitted and "webhooks" in template:
                expected = {400, 401, 403, 422}  # Meta's routes: a tenant key is no signature or verify token
            if resp.status_code not in expected:
                problems.append(f"{label}: {resp.status_code} (expected {sorted(expected)}) {resp.text[:200]}")
            problems += [f"{label} leaked {leak}" for leak in _leaks(resp, victim, sent)]
    after = both()
    for name in before:
        problems += [f"refused calls changed {name}'s {change}" for change in _diff(before[name], after[name])]

    # Pass 2: every admitted role, pointed at the victim's resources → 404 or an answer without its data, and
    # the victim's state does not change (the caller's own may: it wrote to itself).
    before_victim = _snapshot(stack, victim)
    for template, method, operation in operations:
        for role in sorted(_tenant_roles(operation) or ()):
            resp, sent = call(template, method, operation, role)
            label = f"{method.upper()} {template} with {caller.name}'s {role} key"
            if resp.status_code in (401, 403) or resp.status_code >= 500:
                problems.append(f"{label}: {resp.status_code} for an admitted role {resp.text[:200]}")
            if resp.status_code < 300 and method != "get" and any(v in sent for v in victim.identifiers().values()):
                problems.append(f"{label}: {resp.status_code} on the victim's resource {resp.text[:200]}")
            problems += [f"{label} leaked {leak}: {resp.text[:300]}" for leak in _leaks(resp, victim, sent)]
    problems += [f"{caller.name}'s admitted calls changed {victim.name}'s {change}"
                 for change in _diff(before_victim, _snapshot(stack, victim))]
    assert calls > 0
    assert not problems, f"{service}: {len(problems)} isolation problems:\n" + "\n".join(problems)


# ---------------------------------------------------------------------------------------------------------------
# 4. Secrets: last, after everything above
# ---------------------------------------------------------------------------------------------------------------


def test_no_access_token_key_or_secret_in_any_log_metric_or_answer(stack: TestStack,
                                                                  tenants: tuple[Tenant, Tenant]) -> None:
    needles = {"a simulator access token": SIM_TOKENS, "the bootstrap key": stack.api_key}
    for tenant in tenants:
        needles |= {f"{tenant.name}'s {role} key": tenant.key(role) for role in tenant.keys}
    for what, text in stack.responses:  # keys the walk and the revocation test issued
        if "/keys" in what and what.startswith("POST") or what.startswith("scrm keys issue"):
            for key in set(re.findall(r"scrm_[A-Za-z0-9_\-]{16,}", text)):
                needles[f"issued key {key[:9]}…"] = key
    for secret in ("SCRM_ADMIN_TOKEN", "SCRM_INTERNAL_TOKEN", "SCRM_SECRETS_KEY", "SCRM_WHATSAPP_APP_SECRET"):
        needles[secret] = stack.stack.secrets[secret]
    assert len(stack.responses) > 50  # the module's answers were recorded

    def shown_once(what: str) -> bool:  # the one answer that shows a new key to its maker
        return (what.startswith("POST") and "/keys" in what and "→ 201" in what) or what.startswith("scrm keys issue")

    found = stack.sweep(needles, skip_response=shown_once)
    assert not found, "secrets found:\n" + "\n".join(found)
