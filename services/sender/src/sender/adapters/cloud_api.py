"""The WhatsApp Cloud API client: CLOUD-API.md's wire format, pooled HTTP/1.1 keep-alive."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import httpx

from scrm_common.contracts.commands import SendMessage, TemplateHeader, TemplateMessage
from scrm_common.contracts.events import MAX_ERROR_CODE
from scrm_common.contracts.wire import printable


@dataclass(frozen=True, slots=True)
class Accepted:
    """Meta accepted the request (CLOUD-API.md §3): the wamid and what Meta says of the recipient.

    `wa_id` is `contacts[0].wa_id`, the WhatsApp identity of the number sent to (it can differ from
    it: Mexico's 521…, Brazil's 8-digit mobiles, CLOUD-API.md §1); `input` the `to` Meta echoes;
    `message_status` a template's `messages[0].message_status` (accepted, held_for_quality_assessment,
    paused). Each is None when absent or malformed.
    """

    wamid: str
    wa_id: str | None = None
    input: str | None = None
    message_status: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """Meta refused the request: its `error.code` (None if it gave none), the HTTP status, its details text."""

    code: int | None
    http_status: int
    details: str


@dataclass(frozen=True, slots=True)
class NotSent:
    """The request never left: safe to retry."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """The request may have reached the provider (timeout, dropped connection)."""

    reason: str


Result = Accepted | Rejected | NotSent | Unknown


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """What Meta says of a phone number id the token may use: its display number and verified name."""

    display_phone_number: str | None
    verified_name: str | None


@dataclass(frozen=True, slots=True)
class WabaNumbers:
    """The phone number ids a WABA holds, as `GET /{version}/{waba_id}/phone_numbers` lists them."""

    ids: frozenset[str]


# How many pages of a WABA's phone numbers are read at most (100 a page; Meta allows far fewer numbers a WABA).
MAX_NUMBER_PAGES = 20

# What a template sync asks the management endpoint for (CLOUD-API.md §2.4).
TEMPLATE_FIELDS = "id,name,language,status,category,components,quality_score,rejected_reason,parameter_format"


@dataclass(frozen=True, slots=True)
class TemplatePage:
    """One page of `message_templates`: the templates as Meta lists them, the `after` cursor, and whether
    Meta announced a `next` page."""

    data: list[dict[str, Any]]
    after: str | None
    has_next: bool


def message_body(command: SendMessage) -> dict[str, Any]:
    """The `/messages` body for a command; the idempotency key rides along as callback data."""
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": command.to,
        "biz_opaque_callback_data": command.idempotency_key,
    }
    if command.template is not None:
        template: dict[str, Any] = {"name": command.template.name,
                                    "language": {"code": command.template.language, "policy": "deterministic"}}
        components = template_components(command.template)
        if components:
            template["components"] = components
        body |= {"type": "template", "template": template}
    else:
        body |= {"type": "text", "text": {"body": command.text, "preview_url": True}}
    return body


# A button parameter's type by the button's sub_type (CLOUD-API.md §2.4).
_BUTTON_PARAMETER = {"url": "text", "quick_reply": "payload", "copy_code": "coupon_code"}


def header_parameter(header: TemplateHeader) -> dict[str, Any]:
    """A header's parameter: `{"type": "text", "text"}`, or the media by link (`{"type": "image", "image":
    {"link"}}`, a document's with its `filename`)."""
    if header.type == "text":
        return {"type": "text", "text": header.text}
    media: dict[str, Any] = {"link": header.link}
    if header.type == "document" and header.filename is not None:
        media["filename"] = header.filename
    return {"type": header.type, header.type: media}


def template_components(template: TemplateMessage) -> list[dict[str, Any]]:
    """The `components` of a template send (CLOUD-API.md §2.4), in Meta's order: the header's parameter,
    the body's positional parameters, then one `button` component per button parameter by index
    (`index` a string, as Meta's examples send it); [] for a template without variables."""
    components: list[dict[str, Any]] = []
    if template.header is not None:
        components.append({"type": "header", "parameters": [header_parameter(template.header)]})
    if template.parameters:
        components.append({"type": "body", "parameters": [{"type": "text", "text": p} for p in template.parameters]})
    for button in sorted(template.buttons, key=lambda b: b.index):
        kind = _BUTTON_PARAMETER[button.sub_type]
        components.append({"type": "button", "sub_type": button.sub_type, "index": str(button.index),
                           "parameters": [{"type": kind, kind: button.parameter}]})
    return components


_WA_ID = re.compile(r"^[0-9]{5,20}$")


def accepted_from(payload: dict[str, Any]) -> Accepted | None:
    """Read a 200 answer's wamid, `contacts[0]` and `message_status`; None without a message id.

    Anything of an unexpected shape is left out, never a reason to doubt the send: the wamid alone
    proves Meta accepted it.
    """
    messages = payload.get("messages")
    first = messages[0] if isinstance(messages, list) and messages else None
    if not isinstance(first, dict) or not isinstance(first.get("id"), str) or not first["id"]:
        return None
    contacts = payload.get("contacts")
    contact = contacts[0] if isinstance(contacts, list) and contacts and isinstance(contacts[0], dict) else {}
    wa_id = contact.get("wa_id")
    raw_input = contact.get("input")
    status = first.get("message_status")
    return Accepted(
        wamid=first["id"][:256],
        wa_id=wa_id if isinstance(wa_id, str) and _WA_ID.match(wa_id) else None,
        input=raw_input[:64] if isinstance(raw_input, str) else None,
        message_status=status[:64] if isinstance(status, str) and status else None,
    )


class CloudApiClient:
    """POST {base}/{version}/{phone_number_id}/messages with the account's bearer token."""

    def __init__(self, *, base_url: str, version: str, timeout: float, max_connections: int,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """`transport` replaces the network (tests: an in-process simulator through `httpx.ASGITransport`)."""
        self._version = version
        # Never more requests in flight than pooled connections: a queue inside the pool costs CPU
        # per queued request and holds back the batch's settlement.
        self._in_flight = asyncio.Semaphore(max_connections)
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), http1=True, http2=False,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                                keepalive_expiry=60.0),
            transport=transport,
        )

    async def phone_number(self, *, phone_number_id: str, access_token: str) -> PhoneNumber | Rejected | NotSent:
        """`GET /{version}/{phone_number_id}?fields=display_phone_number,verified_name` with the token: proves
        the token may use the number before it is stored (CLOUD-API.md §1). `PhoneNumber`, `Rejected`
        (Meta's error: 190 a refused token, 100 an unknown number) or `NotSent` (no answer: ask again)."""
        try:
            async with self._in_flight:
                resp = await self._client.get(f"/{self._version}/{phone_number_id}",
                                              params={"fields": "display_phone_number,verified_name"},
                                              headers={"Authorization": f"Bearer {access_token}"})
        except httpx.HTTPError as exc:
            return NotSent(type(exc).__name__)  # never the request: its headers hold the token
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        if resp.status_code != 200:
            return rejected_from(resp.status_code, payload, resp.text)
        if not isinstance(payload, dict):
            return NotSent("the phone number answered without a JSON object")
        display, verified = payload.get("display_phone_number"), payload.get("verified_name")
        return PhoneNumber(display_phone_number=printable(display)[:64] if isinstance(display, str) else None,
                           verified_name=printable(verified)[:256] if isinstance(verified, str) else None)

    async def waba_numbers(self, *, waba_id: str, access_token: str) -> WabaNumbers | Rejected | NotSent:
        """Every page of `GET /{version}/{waba_id}/phone_numbers` with the token (CLOUD-API.md §6.5 management
        API; `data` of {id, display_phone_number, verified_name, …}, paged by `paging.cursors.after` while
        `paging.next` is given): proves the WABA is reachable with the token and which numbers it holds.
        `WabaNumbers`, `Rejected` (Meta's error: 190 a refused token, 200 no permission on the WABA, 100 an
        unknown WABA, 80007/4 rate limits) or `NotSent` (no usable answer: ask again later)."""
        ids: set[str] = set()
        after: str | None = None
        for _ in range(MAX_NUMBER_PAGES):
            params: dict[str, str | int] = {"limit": 100, "fields": "id,display_phone_number,verified_name"}
            if after:
                params["after"] = after
            try:
                async with self._in_flight:
                    resp = await self._client.get(f"/{self._version}/{waba_id}/phone_numbers", params=params,
                                                  headers={"Authorization": f"Bearer {access_token}"})
            except httpx.HTTPError as exc:
                return NotSent(type(exc).__name__)  # never the request: its headers hold the token
            try:
                payload = resp.json()
            except ValueError:
                payload = None
            if resp.status_code != 200:
                return rejected_from(resp.status_code, payload, resp.text)
            if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
                return NotSent("phone_numbers answered without a `data` list")
            ids |= {str(n["id"]) for n in payload["data"] if isinstance(n, dict) and isinstance(n.get("id"), str | int)}
            paging: dict[str, Any] = payload["paging"] if isinstance(payload.get("paging"), dict) else {}
            cursors: dict[str, Any] = paging["cursors"] if isinstance(paging.get("cursors"), dict) else {}
            cursor = cursors.get("after")
            if not paging.get("next") or not isinstance(cursor, str) or not cursor or cursor == after:
                return WabaNumbers(frozenset(ids))
            after = cursor
        return WabaNumbers(frozenset(ids))

    async def send(self, *, phone_number_id: str, access_token: str, body: dict[str, Any]) -> Result:
        """One `/messages` call. `Accepted` (a 200 with a wamid), `Rejected` (Meta's error, CLOUD-API.md §4),
        `NotSent` (no connection: safe to retry) or `Unknown` (it may have arrived: in doubt); no answer raises."""
        try:
            async with self._in_flight:
                resp = await self._client.post(f"/{self._version}/{phone_number_id}/messages", json=body,
                                               headers={"Authorization": f"Bearer {access_token}"})
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return NotSent(f"{type(exc).__name__}: {exc}")
        except httpx.HTTPError as exc:
            return Unknown(f"{type(exc).__name__}: {exc}")
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        if resp.status_code == 200:
            # Meta accepted something: without a readable message id the send is in doubt, not refused.
            accepted = accepted_from(payload) if isinstance(payload, dict) else None
            return accepted if accepted is not None else Unknown("200 without a message id")
        return rejected_from(resp.status_code, payload, resp.text)

    async def list_templates(self, *, waba_id: str, access_token: str, after: str | None = None,
                             limit: int = 100, fields: str = TEMPLATE_FIELDS) -> TemplatePage | Rejected | NotSent:
        """One page of `GET /{version}/{waba_id}/message_templates` (CLOUD-API.md §6.5 management API).

        `TemplatePage` (its `data`, the `paging.cursors.after` cursor and whether a `next` page exists),
        `Rejected` (Meta's error: 80007 / 4 are rate limits, 190 a refused token) or `NotSent` (no answer:
        a read, so safe to ask again)."""
        params: dict[str, str | int] = {"limit": limit, "fields": fields}
        if after:
            params["after"] = after
        try:
            resp = await self._client.get(f"/{self._version}/{waba_id}/message_templates", params=params,
                                          headers={"Authorization": f"Bearer {access_token}"})
        except httpx.HTTPError as exc:
            return NotSent(f"{type(exc).__name__}: {exc}")
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        if resp.status_code != 200:
            return rejected_from(resp.status_code, payload, resp.text)
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            return Rejected(None, resp.status_code, "message_templates answered without a `data` list")
        paging = payload.get("paging") if isinstance(payload.get("paging"), dict) else {}
        cursors = paging.get("cursors") if isinstance(paging.get("cursors"), dict) else {}
        cursor = cursors.get("after")
        return TemplatePage(data=[t for t in payload["data"] if isinstance(t, dict)],
                            after=cursor if isinstance(cursor, str) and cursor else None,
                            has_next=bool(paging.get("next")))

    async def aclose(self) -> None:
        await self._client.aclose()


def rejected_from(http_status: int, payload: Any, text: str) -> Rejected:
    """Meta's error body (CLOUD-API.md §4.1) as `Rejected`: `error.code` (None when absent or not an
    integer) and `error_data.details`, else `error.message`, else the raw text. Reads any shape; never raises
    (an answer that raised would be taken for a send in doubt and resent forever)."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return Rejected(None, http_status, printable(text)[:200])
    code = error.get("code")
    number = code if isinstance(code, int) and not isinstance(code, bool) else \
        int(code) if isinstance(code, str) and code.isdecimal() and code.isascii() else None
    if number is not None and not 0 <= number <= MAX_ERROR_CODE:
        number = None  # no Meta code is that large; kept out of the 32-bit column
    error_data = error.get("error_data")
    details = (error_data.get("details") if isinstance(error_data, dict) else None) or error.get("message") or ""
    return Rejected(number, http_status, printable(str(details))[:500])
