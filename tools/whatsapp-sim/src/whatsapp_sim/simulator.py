"""The simulated Cloud API: checks each request, keeps state and schedules the webhooks that follow."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from whatsapp_sim.clicks import Clicker
from whatsapp_sim.config import Account, SimulatorSettings
from whatsapp_sim.domain.errors import MetaError, meta_error
from whatsapp_sim.domain.ids import new_fbtrace_id, new_hex_id, new_wamid
from whatsapp_sim.domain.limits import PairLimiter, ThroughputLimiter
from whatsapp_sim.domain.outcomes import OutcomeOdds, Plan, failure_plan, plan_outcome, pricing_for
from whatsapp_sim.domain.templates import TemplateCatalog, graph_template, parse_template, template_id
from whatsapp_sim.domain.validation import AcceptedMessage, ReadReceipt, normalize_recipient, validate_request
from whatsapp_sim.domain.window import ServiceWindows
from whatsapp_sim.metrics import SimMetrics
from whatsapp_sim.store import MessageRecord, SimStore, iso
from whatsapp_sim.webhooks import (
    Event,
    StatusEvent,
    ValueEvent,
    WabaEvent,
    WebhookDispatcher,
    inbound_value,
    status_object,
    template_status_value,
    user_preferences_value,
)

log = logging.getLogger(__name__)

VERSION = re.compile(r"v(\d+)\.0")
SERVER_FAULT_CODES = (131000, 131016, 2)
# What `POST /_sim/templates/{waba}/{name}/status` accepts: the event sent, and the status it leaves.
TEMPLATE_EVENTS = {"APPROVED": "APPROVED", "REINSTATED": "APPROVED", "UNPAUSED": "APPROVED", "PAUSED": "PAUSED",
                   "DISABLED": "DISABLED", "REJECTED": "REJECTED", "PENDING": "PENDING", "FLAGGED": None}
MAX_TEMPLATE_PAGE = 100
REPLIES = ("Thanks!", "When will it arrive?", "👍", "Can I change the delivery address?", "Great, thank you",
           "Is there a discount for a second item?")
Reply = tuple[int, dict[str, Any]]


class ApiError(Exception):
    """A request to a `/_sim` endpoint that cannot be served (HTTP 400/404)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _encode_cursor(index: int) -> str:
    """An opaque Graph-style cursor for a position in the listing."""
    return base64.urlsafe_b64encode(f"tpl:{index}".encode()).decode().rstrip("=")


def _cursor(raw: str) -> int:
    """The position a cursor stands for; ValueError for one the simulator never gave."""
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        text = ""
    kind, _, number = text.partition(":")
    if kind != "tpl" or not number.isdigit():
        raise ValueError(f"Invalid cursor: {raw[:64]}")
    return int(number)


def load_catalog(settings: SimulatorSettings) -> TemplateCatalog:
    """The template catalog the settings point at."""
    return TemplateCatalog.from_json(settings.templates_source().read_text(encoding="utf-8"))


class Simulator:
    """All simulator state for one process: accounts, catalog, limits, windows, store and webhooks."""

    def __init__(
        self,
        settings: SimulatorSettings,
        *,
        registry: CollectorRegistry,
        catalog: TemplateCatalog | None = None,
        http_client: httpx.AsyncClient | None = None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        click_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.accounts: dict[str, Account] = settings.accounts()
        self.wa_ids = settings.wa_id_rules()
        self._tokens = {account.token for account in self.accounts.values()}
        base = catalog if catalog is not None else load_catalog(settings)
        # Every WABA gets the catalog (its own copy: pausing a template of one WABA leaves the others');
        # the first account's WABA shares the object passed in, as the single catalog did before.
        wabas = list(dict.fromkeys(a.waba_id for a in self.accounts.values()))
        self.catalogs: dict[str, TemplateCatalog] = {w: base if i == 0 else base.copy() for i, w in enumerate(wabas)}
        self._rate_limited_listings = settings.simulator_rate_limit_templates
        self._wall = wall
        self.rng = rng or random.Random(settings.simulator_seed)
        self.metrics = SimMetrics(registry)
        self.store = SimStore(settings.simulator_message_cap, settings.simulator_rejection_cap)
        self.windows = ServiceWindows(wall, settings.simulator_window_hours * 3600.0)
        self.throughput = ThroughputLimiter(settings.simulator_mps, mono)
        self.pairs = PairLimiter(settings.simulator_pair_interval_s, settings.simulator_pair_burst, mono)
        self.odds = OutcomeOdds(delivered=settings.simulator_p_delivered, read=settings.simulator_p_read,
                                fail=settings.simulator_p_fail, reply=settings.simulator_p_reply)
        self._marketing_stopped: set[tuple[str, str]] = set()
        self._replies_due: dict[str, dict[str, Any]] = {}
        self.dispatcher = WebhookDispatcher(
            url=settings.simulator_webhook_url, secret=settings.whatsapp_app_secret,
            waba_id=self.waba_of, metadata=self.metadata, client=http_client,
            on_due=self._on_due, metrics=self.metrics, rng=random.Random(self.rng.random()),
            max_tries=settings.simulator_webhook_max_tries, retry_base_s=settings.simulator_webhook_retry_base_s,
            retry_max_s=settings.simulator_webhook_retry_max_s, timeout_s=settings.simulator_webhook_timeout_s,
            concurrency=settings.simulator_webhook_concurrency, batch_max=settings.simulator_webhook_batch,
            linger_s=settings.simulator_webhook_linger_ms / 1000,
        )
        self.clicker = Clicker(
            rate=settings.simulator_click_rate, delay_s=settings.simulator_click_delay_s,
            public_base_url=settings.public_base_url, ingest_url=settings.ingest_url,
            rng=random.Random(self.rng.random()), metrics=self.metrics, client=click_client,
            timeout_s=settings.simulator_click_timeout_s, mono=mono,
        )

    # -- Graph API -------------------------------------------------------------------------------

    @property
    def catalog(self) -> TemplateCatalog:
        """The catalog of the first account's WABA (the default number's)."""
        return self.catalogs[self.accounts[next(iter(self.accounts))].waba_id]

    def waba_of(self, phone_number_id: str) -> str:
        """The WABA a number belongs to (`entry.id` of its webhooks)."""
        account = self.accounts.get(phone_number_id)
        return account.waba_id if account else self.settings.simulator_waba_id

    def metadata(self, phone_number_id: str) -> dict[str, str]:
        """`value.metadata` of a number's webhooks."""
        account = self.accounts.get(phone_number_id)
        display = account.display_phone_number if account else self.settings.simulator_display_phone_number
        return {"display_phone_number": display, "phone_number_id": phone_number_id}

    def _authorize(self, version: str, phone_number_id: str, token: str | None, verb: str) -> MetaError | None:
        if not VERSION.fullmatch(version):
            return meta_error(100, f"Unknown path components: /{version}/{phone_number_id}", title="Invalid parameter")
        if token is None or token not in self._tokens:
            return meta_error(190, "The access token could not be decrypted or is not valid.")
        account = self.accounts.get(phone_number_id)
        if account is None:
            return meta_error(
                100, f"Unsupported {verb} request. Object with ID '{phone_number_id}' does not exist, cannot be "
                     "loaded due to missing permissions, or does not support this operation.",
                title=f"Unsupported {verb} request")
        if account.token != token:
            return meta_error(190, f"The access token is not valid for phone number ID {phone_number_id}.")
        return None

    def _error(self, error: MetaError, phone_number_id: str, body: Any = None) -> Reply:
        trace = new_fbtrace_id(self.rng)
        to = body.get("to") if isinstance(body, dict) else None
        kind = body.get("type", "text") if isinstance(body, dict) else None
        template = body.get("template") if isinstance(body, dict) else None
        self.store.reject({
            "at": iso(self._wall()), "phone_number_id": phone_number_id, "to": to, "type": kind,
            "template": template.get("name") if isinstance(template, dict) else None,
            "code": error.code, "http_status": error.http_status, "title": error.title,
            "details": error.details, "fbtrace_id": trace,
        }, error.code)
        self.metrics.rejected.labels(str(error.code)).inc()
        return error.http_status, error.body(trace)

    def send(self, version: str, phone_number_id: str, token: str | None, raw: bytes) -> Reply:
        """`POST /{version}/{phone_number_id}/messages`."""
        denied = self._authorize(version, phone_number_id, token, "post")
        if denied is not None:
            return self._error(denied, phone_number_id)
        try:
            body = json.loads(raw) if raw.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            return self._error(meta_error(100, "The request body is not valid JSON."), phone_number_id)
        account = self.accounts[phone_number_id]
        result = validate_request(body, self.catalogs[account.waba_id], business_number=account.display_phone_number,
                                  known_inbound=lambda wamid: self.store.is_inbound(phone_number_id, wamid),
                                  wa_id_of=self.wa_ids.wa_id_for)
        if isinstance(result, MetaError):
            return self._error(result, phone_number_id, body)
        if isinstance(result, ReadReceipt):
            self.store.stats.read_receipts += 1
            self.metrics.read_receipts.inc()
            return 200, {"success": True}
        return self._accept(version, phone_number_id, result, body)

    def _accept(self, version: str, phone_number_id: str, msg: AcceptedMessage, body: Any) -> Reply:
        p_fault = self.settings.simulator_p_server_error
        if p_fault > 0 and self.rng.random() < p_fault:
            return self._error(meta_error(self.rng.choice(SERVER_FAULT_CODES)), phone_number_id, body)
        limited = self.throughput.check(phone_number_id) or self.pairs.check(phone_number_id, msg.wa_id)
        if limited is not None:
            return self._error(limited, phone_number_id, body)
        window_open = self.windows.is_open(phone_number_id, msg.wa_id)
        if msg.free_form and not window_open and self.settings.simulator_window_mode == "sync":
            return self._error(meta_error(131047), phone_number_id, body)
        wamid = new_wamid(self.rng, msg.wa_id)
        while self.store.get(wamid) is not None:
            wamid = new_wamid(self.rng, msg.wa_id)
        record = self.store.add(wamid, phone_number_id, msg, self._wall())
        self.metrics.accepted.labels(msg.type).inc()
        category = msg.template.category if msg.template else None
        delays = self.settings.simulator_status_delay_ms
        if msg.free_form and not window_open:
            plan = failure_plan(self.rng, 131047, delays)
        elif category == "marketing" and (phone_number_id, msg.wa_id) in self._marketing_stopped:
            plan = failure_plan(self.rng, 131050, delays)
        else:
            plan = plan_outcome(self.rng, self.odds, delays, marketing=category == "marketing")
        self._schedule(record, plan, window_open, int(VERSION.fullmatch(version).group(1)))  # type: ignore[union-attr]
        self.clicker.consider(msg)
        message: dict[str, Any] = {"id": wamid}
        if msg.template is not None:
            message["message_status"] = "accepted"
        return 200, {"messaging_product": "whatsapp", "contacts": [{"input": msg.to, "wa_id": msg.wa_id}],
                     "messages": [message]}

    def _schedule(self, record: MessageRecord, plan: Plan, window_open: bool, version: int) -> None:
        msg, now = record.message, self._wall()
        category = msg.template.category if msg.template else None
        pricing = pricing_for(category, window_open=window_open)
        conversation_id = new_hex_id(self.rng)
        priced_delivery = False
        for planned in plan.statuses:
            charge = planned.status == "sent" or (planned.status in ("delivered", "read") and not priced_delivery)
            priced_delivery |= planned.status in ("delivered", "read")
            conversation = None
            if version <= 23 and planned.status != "failed":
                conversation = {"id": conversation_id, "origin": {"type": category or "service"}}
                if planned.status == "sent":
                    conversation["expiration_timestamp"] = str(int(now + 86_400))
            errors = [meta_error(planned.error_code).webhook_error()] if planned.error_code else None
            status = status_object(
                wamid=record.wamid, status=planned.status, timestamp=int(now + planned.after_s),
                recipient_id=msg.wa_id, biz_opaque_callback_data=msg.biz_opaque_callback_data,
                pricing=pricing if charge and planned.status != "failed" else None,
                conversation=conversation, errors=errors)
            self.dispatcher.schedule(planned.after_s, StatusEvent(record.phone_number_id, status, planned.error_code))
        if plan.reply_after_s is not None:
            at = now + plan.reply_after_s
            name = f"Customer {msg.wa_id[-4:]}"
            message = self._inbound_message(msg.wa_id, "text", {"body": self.rng.choice(REPLIES)}, at)
            self._replies_due[message["id"]] = {"wa_id": msg.wa_id, "name": name, "message": message}
            self.dispatcher.schedule(plan.reply_after_s, ValueEvent(
                record.phone_number_id, inbound_value(wa_id=msg.wa_id, name=name, message=message),
                wamid=message["id"]))

    def _on_due(self, event: Event) -> None:
        if isinstance(event, StatusEvent):
            status = event.status["status"]
            self.store.mark(event.status["id"], status, event.error_code)
            self.metrics.statuses.labels(status).inc()
        elif isinstance(event, ValueEvent) and event.wamid is not None and event.wamid in self._replies_due:
            reply = self._replies_due.pop(event.wamid)
            self._receive(event.phone_number_id, reply["wa_id"], reply["name"], reply["message"])

    def phone_number(self, version: str, phone_number_id: str, token: str | None, fields: str | None) -> Reply:
        """`GET /{version}/{phone_number_id}?fields=...`: the number's metadata."""
        denied = self._authorize(version, phone_number_id, token, "get")
        if denied is not None:
            return self._error(denied, phone_number_id)
        account = self.accounts[phone_number_id]
        known: dict[str, Any] = {
            "id": phone_number_id, "display_phone_number": account.display_phone_number,
            "verified_name": "SCRM Simulator", "quality_rating": "GREEN", "throughput": {"level": "STANDARD"},
            "whatsapp_business_manager_messaging_limit": "TIER_250", "messaging_limit_tier": "TIER_250",
            "code_verification_status": "VERIFIED", "name_status": "APPROVED", "platform_type": "CLOUD_API",
            "status": "CONNECTED",
        }
        if not fields:
            wanted = ["id", "display_phone_number", "quality_rating", "throughput",
                      "whatsapp_business_manager_messaging_limit", "verified_name"]
        else:
            wanted = [f.strip() for f in fields.split(",") if f.strip()]
            unknown = [f for f in wanted if f not in known]
            if unknown:
                return self._error(meta_error(
                    100, f"Tried accessing nonexisting field ({unknown[0]}) on node type "
                         "(WhatsAppBusinessPhoneNumber)"), phone_number_id)
        return 200, {"id": phone_number_id, **{f: known[f] for f in wanted}}

    def _authorize_waba(self, version: str, waba_id: str, path: str, token: str | None) -> MetaError | None:
        """A management call on a WABA: the token must be one of a number of that WABA (190 for an unknown
        token, 100 for an unknown WABA, 200 for another WABA's token)."""
        if not VERSION.fullmatch(version):
            return meta_error(100, f"Unknown path components: /{version}/{path}", title="Invalid parameter")
        if token is None or token not in self._tokens:
            return meta_error(190, "The access token could not be decrypted or is not valid.")
        if waba_id not in self.catalogs:
            return meta_error(
                100, f"Unsupported get request. Object with ID '{waba_id}' does not exist, cannot be loaded due to "
                     "missing permissions, or does not support this operation.", title="Unsupported get request")
        if not any(a.token == token and a.waba_id == waba_id for a in self.accounts.values()):
            return meta_error(200, f"The access token has no permission on WhatsApp Business Account {waba_id}.",
                              title="Permissions error")
        return None

    def phone_numbers(self, version: str, waba_id: str, token: str | None, params: Mapping[str, str]) -> Reply:
        """`GET /{version}/{waba_id}/phone_numbers`: the WABA's numbers (CLOUD-API §6.5 management API), as
        Meta lists them: `data` of {id, display_phone_number, verified_name, quality_rating,
        code_verification_status, platform_type, throughput}; paged with `limit` (default 25, at most 100)
        and `after` cursors, `paging.next` only when there are more. The token must be one of a number of
        that WABA (190 / 200 / 100 like `message_templates`)."""
        denied = self._authorize_waba(version, waba_id, f"{waba_id}/phone_numbers", token)
        if denied is not None:
            return self._error(denied, waba_id)
        try:
            limit = int(params.get("limit") or 25)
            start = _cursor(params["after"]) + 1 if params.get("after") else 0
        except ValueError as exc:
            return self._error(meta_error(100, str(exc)), waba_id)
        if limit < 1:
            return self._error(meta_error(100, "Param limit must be a positive integer."), waba_id)
        limit = min(limit, MAX_TEMPLATE_PAGE)
        numbers = [a for a in self.accounts.values() if a.waba_id == waba_id]
        page = list(enumerate(numbers))[start:start + limit]
        data = [{"id": a.phone_number_id, "display_phone_number": a.display_phone_number,
                 "verified_name": "SCRM Simulator", "quality_rating": "GREEN", "code_verification_status": "VERIFIED",
                 "platform_type": "CLOUD_API", "throughput": {"level": "STANDARD"}} for _, a in page]
        body: dict[str, Any] = {"data": data}
        if page:
            first, last = page[0][0], page[-1][0]
            paging: dict[str, Any] = {"cursors": {"before": _encode_cursor(first), "after": _encode_cursor(last)}}
            if last + 1 < len(numbers):
                paging["next"] = f"/{version}/{waba_id}/phone_numbers?limit={limit}&after={_encode_cursor(last)}"
            body["paging"] = paging
        return 200, body

    def message_templates(self, version: str, waba_id: str, token: str | None, params: Mapping[str, str]) -> Reply:
        """`GET /{version}/{waba_id}/message_templates`: the WABA's templates, paged like Graph.

        The token must be one of a number of that WABA (190 for an unknown token, 200 for another WABA's).
        `limit` (default SCRM_SIMULATOR_TEMPLATES_PAGE_SIZE, at most 100), `after` / `before` cursors;
        `paging.next` only when there are more; `fields` picks the fields (`id` always); `name`, `language`,
        `status` filter. While SCRM_SIMULATOR_RATE_LIMIT_TEMPLATES lasts, a listing answers 80007."""
        path = f"{waba_id}/message_templates"
        denied = self._authorize_waba(version, waba_id, path, token)
        if denied is not None:
            return self._error(denied, waba_id)
        if self._rate_limited_listings > 0:
            self._rate_limited_listings -= 1
            return self._error(meta_error(80007, "The WhatsApp Business Account has reached its rate limit.",
                                          title="Rate limit issues"), waba_id)
        try:
            limit = int(params.get("limit") or self.settings.simulator_templates_page_size)
            start = _cursor(params["after"]) + 1 if params.get("after") else 0
            end = _cursor(params["before"]) if params.get("before") else None
        except ValueError as exc:
            return self._error(meta_error(100, str(exc)), waba_id)
        if limit < 1:
            return self._error(meta_error(100, "Param limit must be a positive integer."), waba_id)
        limit = min(limit, MAX_TEMPLATE_PAGE)
        rows = [graph_template(t, waba_id) for t in self.catalogs[waba_id].all()]
        for key in ("name", "language", "status"):
            if params.get(key):
                rows = [r for r in rows if str(r[key]).upper() == params[key].upper()]
        if end is not None:
            start = max(0, end - limit)
            page = list(enumerate(rows))[start:end]
        else:
            page = list(enumerate(rows))[start:start + limit]
        wanted = [f.strip() for f in params["fields"].split(",") if f.strip()] if params.get("fields") else None
        data = [{k: v for k, v in row.items() if wanted is None or k in wanted or k == "id"} for _, row in page]
        body: dict[str, Any] = {"data": data}
        if page:
            first, last = page[0][0], page[-1][0]
            paging: dict[str, Any] = {"cursors": {"before": _encode_cursor(first), "after": _encode_cursor(last)}}
            base = f"/{version}/{path}?limit={limit}" + (f"&fields={params['fields']}" if wanted else "")
            if last + 1 < len(rows):
                paging["next"] = f"{base}&after={_encode_cursor(last)}"
            if first > 0:
                paging["previous"] = f"{base}&before={_encode_cursor(first)}"
            body["paging"] = paging
        return 200, body

    # -- simulation helpers ----------------------------------------------------------------------

    def set_template_status(self, waba_id: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A template's status changes (every language, or `language`): the catalog follows and a signed
        `message_template_status_update` webhook goes out per template changed."""
        catalog = self.catalogs.get(waba_id)
        if catalog is None:
            raise ApiError(404, f"unknown WABA {waba_id}")
        event = str(body.get("status") or "").upper()
        if event not in TEMPLATE_EVENTS:
            raise ApiError(400, f"'status' must be one of {', '.join(TEMPLATE_EVENTS)}")
        language = body.get("language")
        reason = body.get("reason")
        if (language is not None and not isinstance(language, str)) or (reason is not None and
                                                                         not isinstance(reason, str)):
            raise ApiError(400, "'language' and 'reason' are strings")
        targets = [catalog.get(name, language)] if language else [catalog.get(name, lang)
                                                                  for lang in catalog.languages_of(name)]
        found = [t for t in targets if t is not None]
        if not found:
            raise ApiError(404, f"no template {name}{f' ({language})' if language else ''} in WABA {waba_id}")
        status = TEMPLATE_EVENTS[event]
        now = int(self._wall())
        out = []
        for template in found:
            if status is not None:
                catalog.upsert(replace(template, status=status))
            tid = template_id(waba_id, template.name, template.language)
            self.dispatcher.schedule(0, WabaEvent(waba_id, template_status_value(
                event=event, template_id=tid, name=template.name, language=template.language,
                category=template.category, reason=reason), "message_template_status_update", now))
            out.append({"id": tid, "name": template.name, "language": template.language,
                        "status": status or template.status, "event": event})
        return {"waba_id": waba_id, "templates": out}


    def _inbound_message(self, wa_id: str, kind: str, content: Mapping[str, Any], at: float,
                         context_id: str | None = None, phone_number_id: str | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"from": wa_id, "id": new_wamid(self.rng, wa_id), "timestamp": str(int(at)),
                                   "type": kind, kind: dict(content)}
        if context_id:
            pnid = phone_number_id or next(iter(self.accounts))
            message = {"context": {"from": self.metadata(pnid)["display_phone_number"], "id": context_id},
                       **message}
        return message

    def _receive(self, phone_number_id: str, wa_id: str, name: str, message: dict[str, Any]) -> float:
        closes = self.windows.touch(phone_number_id, wa_id)
        self.store.add_inbound(phone_number_id, message["id"], {
            "phone_number_id": phone_number_id, "wa_id": wa_id, "name": name, "message": message,
            "received_at": iso(self._wall())})
        self.metrics.inbound.inc()
        return closes

    def _account_and_user(self, body: Mapping[str, Any]) -> tuple[str, str]:
        pnid = str(body.get("phone_number_id") or next(iter(self.accounts)))
        if pnid not in self.accounts:
            raise ApiError(404, f"unknown phone_number_id {pnid}")
        raw_from = body.get("from") or body.get("wa_id")
        digits = normalize_recipient(raw_from) if isinstance(raw_from, str) else None
        if digits is None:
            raise ApiError(400, "'from' must be a phone number (8-15 digits)")
        return pnid, self.wa_ids.wa_id_for(digits)  # WhatsApp writes from the customer's wa_id

    def inbound(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A customer writes to a business number: open the window now and send the signed webhook."""
        pnid, wa_id = self._account_and_user(body)
        name = str(body.get("name") or f"Customer {wa_id[-4:]}")
        kind = str(body.get("type", "text"))
        content: dict[str, Any]
        if kind == "text":
            text = body.get("text")
            if not isinstance(text, str) or not text:
                raise ApiError(400, "'text' is required")
            content = {"body": text}
        elif kind == "button":
            content = {"payload": str(body.get("payload", "")), "text": str(body.get("text", ""))}
        elif kind == "interactive":
            reply = {"id": str(body.get("button_id", body.get("payload", ""))), "title": str(body.get("text", ""))}
            content = {"type": "button_reply", "button_reply": reply}
        else:
            raise ApiError(400, "'type' must be text, button or interactive")
        context_id = body.get("context_id")
        message = self._inbound_message(wa_id, kind, content, self._wall(),
                                        str(context_id) if context_id else None, pnid)
        closes = self._receive(pnid, wa_id, name, message)
        self.dispatcher.schedule(0, ValueEvent(pnid, inbound_value(wa_id=wa_id, name=name, message=message),
                                               wamid=message["id"]))
        return {"id": message["id"], "phone_number_id": pnid, "wa_id": wa_id, "window_closes_at": iso(closes)}

    def user_preferences(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A customer stops or resumes marketing messages: later marketing templates fail with 131050."""
        pnid, wa_id = self._account_and_user(body)
        value = body.get("value")
        if value not in ("stop", "resume"):
            raise ApiError(400, "'value' must be stop or resume")
        if value == "stop":
            self._marketing_stopped.add((pnid, wa_id))
        else:
            self._marketing_stopped.discard((pnid, wa_id))
        name = str(body.get("name") or f"Customer {wa_id[-4:]}")
        self.dispatcher.schedule(0, ValueEvent(pnid, user_preferences_value(
            wa_id=wa_id, name=name, value=str(value), timestamp=int(self._wall())), field_name="user_preferences"))
        return {"phone_number_id": pnid, "wa_id": wa_id, "value": value}

    def upsert_templates(self, body: Any, waba_id: str | None = None) -> list[dict[str, Any]]:
        """Add or replace catalog entries (one object or a list) in the WABA's catalog, or every WABA's (no
        webhook: use `set_template_status` to pause one as Meta would)."""
        if waba_id is not None and waba_id not in self.catalogs:
            raise ApiError(404, f"unknown WABA {waba_id}")
        entries = body if isinstance(body, list) else [body]
        try:
            templates = [parse_template(entry) for entry in entries]
        except (ValueError, TypeError, AttributeError) as exc:
            raise ApiError(400, str(exc)) from None
        for catalog in [self.catalogs[waba_id]] if waba_id is not None else self.catalogs.values():
            for template in templates:
                catalog.upsert(template)
        return [t.to_dict() for t in templates]

    # -- inspection ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters for `/_sim/stats`."""
        s, d = self.store.stats, self.dispatcher.stats
        return {
            "accepted": s.accepted,
            "accepted_by_type": dict(s.accepted_by_type),
            "rejected": {str(code): n for code, n in sorted(s.rejected.items())},
            "rejected_total": sum(s.rejected.values()),
            "read_receipts": s.read_receipts,
            "inbound": s.inbound,
            "statuses": dict(s.statuses),
            "stored_messages": len(self.store),
            "last_seq": self.store.last_seq,
            "webhooks": {"delivered": d.delivered, "failed": d.failed, "pending": self.dispatcher.pending,
                         "posts_delivered": d.posts_delivered, "posts_failed": d.posts_failed,
                         "retries": d.retries, "last_error": d.last_error, "url": self.dispatcher.url},
            "clicks": {"planned": self.clicker.stats.planned, "redirected": self.clicker.stats.redirected,
                       "answered": self.clicker.stats.answered, "failed": self.clicker.stats.failed,
                       "pending": self.clicker.pending},
        }

    def reset(self) -> None:
        """Forget messages, counters, windows, limits, opt-outs and pending webhooks."""
        self.store.clear()
        self.windows.clear()
        self.throughput.clear()
        self.pairs.clear()
        self.dispatcher.clear()
        self._marketing_stopped.clear()
        self._replies_due.clear()
        self.clicker.clear()

    async def run(self, stop: asyncio.Event) -> None:
        """The background loops (webhook delivery, customers' link clicks) for `scrm_common.runtime.serve`."""
        clicks = asyncio.create_task(self.clicker.run(stop), name="link-clicks")
        try:
            await self.dispatcher.run(stop)
        finally:
            clicks.cancel()
            await asyncio.gather(clicks, return_exceptions=True)

    async def ready(self) -> bool:
        """Ready once webhooks are being delivered."""
        return self.dispatcher.running
