"""What a customer's message says, one small parser per Meta message `type` (CLOUD-API.md §5.4).

`MESSAGE_TYPES` maps a type to its parser; a parser returns `Said` (an inbound message: any type
counts as a reply), `NumberChanged` (the customer moved to a new number) or `Ignored` (not a message
the customer wrote, with its reason). A type missing from the table is skipped as `unknown_type`.
Adding a type is one function here and one corpus row in tests/corpus/webhooks/.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scrm_common.contracts.events import InboundType, Scalar

from .model import EDIT, GROUP, IDENTITY_CHANGED, REQUEST_WELCOME, REVOKE, UNKNOWN_TYPE
from .reading import ItemReader, ident, items, obj, wa_id

Details = dict[str, Scalar]


class Malformed(ValueError):
    """The item does not have the shape its type promises (e.g. a text message without a body)."""


@dataclass(frozen=True, slots=True)
class Said:
    """An inbound message: its contract type, the text written or chosen, the reply id, type details."""

    type: InboundType
    text: str | None = None
    reply_id: str | None = None
    context_message_id: str | None = None  # set only where the type names it (a reaction's message)
    details: Details = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NumberChanged:
    """`system` user_changed_number: the customer's WhatsApp moved from `old_wa_id` to `new_wa_id`."""

    old_wa_id: str
    new_wa_id: str
    detail: str | None


@dataclass(frozen=True, slots=True)
class Ignored:
    """Not something the customer said: skipped with `reason` (see model.py)."""

    reason: str
    detail: str | None = None


Outcome = Said | NumberChanged | Ignored
MessageParser = Callable[[dict[str, Any], ItemReader], Outcome]


def _compact(details: dict[str, Any]) -> Details:
    return {k: v for k, v in details.items() if v is not None}


def _text(message: dict[str, Any], r: ItemReader) -> Outcome:
    body = r.text(obj(message.get("text")).get("body"))
    if body is None:
        raise Malformed("a text message without text.body")
    return Said("text", body)


def _media(kind: InboundType, *, captioned: bool) -> MessageParser:
    """Image, video, audio, document, sticker: the media id and mime type; the caption where one can be."""

    def parse(message: dict[str, Any], r: ItemReader) -> Outcome:
        media = obj(message.get(str(message.get("type"))))
        voice = media.get("voice") is True
        details = _compact({
            "media_id": ident(media.get("id")),
            "mime_type": r.scalar(media.get("mime_type"), 128),
            "filename": r.scalar(media.get("filename"), 256),
            "animated": media.get("animated") if isinstance(media.get("animated"), bool) else None,
        })
        caption = r.text(media.get("caption")) if captioned else None
        return Said("voice" if kind == "audio" and voice else kind, caption or None, details=details)

    return parse


def _reaction(message: dict[str, Any], r: ItemReader) -> Outcome:
    # An empty (or absent) emoji is an un-reaction: the customer took their reaction back.
    reaction = obj(message.get("reaction"))
    emoji = r.text(reaction.get("emoji"), 64) or None
    return Said("reaction", emoji, context_message_id=ident(reaction.get("message_id"), 256),
                details={"removed": emoji is None})


def _location(message: dict[str, Any], r: ItemReader) -> Outcome:
    place = obj(message.get("location"))
    name, address = r.text(place.get("name"), 512), r.text(place.get("address"), 1024)
    details = _compact({
        "latitude": r.scalar(place.get("latitude")), "longitude": r.scalar(place.get("longitude")),
        "name": name or None, "address": address or None, "url": r.scalar(place.get("url")),
    })
    return Said("location", ", ".join(p for p in (name, address) if p) or None, details=details)


def _contacts(message: dict[str, Any], r: ItemReader) -> Outcome:
    cards = [obj(c) for c in items(message.get("contacts"))]
    first = obj(cards[0].get("name")) if cards else {}
    return Said("contacts", details=_compact({
        "contacts": len(cards), "formatted_name": r.scalar(first.get("formatted_name"), 256)}))


def _order(message: dict[str, Any], r: ItemReader) -> Outcome:
    order = obj(message.get("order"))
    lines = [obj(i) for i in items(order.get("product_items"))]
    quantities = [i.get("quantity") for i in lines]
    currencies = {i.get("currency") for i in lines if isinstance(i.get("currency"), str)}
    return Said("order", r.text(order.get("text")) or None, details=_compact({
        "catalog_id": ident(order.get("catalog_id")),
        "product_items": len(lines),
        "quantity": sum(q for q in quantities if isinstance(q, int) and not isinstance(q, bool)),
        "currency": r.text(next(iter(currencies)), 8) if len(currencies) == 1 else None,
    }))


def _button(message: dict[str, Any], r: ItemReader) -> Outcome:
    # A template's quick-reply button: `text` is its label, `payload` what the send put in it.
    button = obj(message.get("button"))
    return Said("button", r.text(button.get("text")) or None, reply_id=r.text(button.get("payload"), 1024) or None)


def _button_reply(reply: dict[str, Any], r: ItemReader) -> tuple[str | None, str | None, Details]:
    return r.text(reply.get("title")) or None, r.text(reply.get("id"), 1024) or None, {}


def _list_reply(reply: dict[str, Any], r: ItemReader) -> tuple[str | None, str | None, Details]:
    details = _compact({"description": r.scalar(reply.get("description"), 512)})
    return r.text(reply.get("title")) or None, r.text(reply.get("id"), 1024) or None, details


def _flow_reply(reply: dict[str, Any], r: ItemReader) -> tuple[str | None, str | None, Details]:
    # A WhatsApp Flow submitted: `response_json` is a JSON string whose `flow_token` names the send.
    raw = reply.get("response_json")
    token = None
    if isinstance(raw, str):
        try:
            token = obj(json.loads(raw)).get("flow_token")
        except ValueError:
            token = None
    details = _compact({"flow_name": r.scalar(reply.get("name"), 128), "response_json": r.scalar(raw, 2048)})
    return r.text(reply.get("body")) or None, r.text(token, 1024) or None, details


InteractiveParser = Callable[[dict[str, Any], ItemReader], tuple[str | None, str | None, Details]]
INTERACTIVE_TYPES: dict[str, InteractiveParser] = {
    "button_reply": _button_reply,
    "list_reply": _list_reply,
    "nfm_reply": _flow_reply,
}


def _interactive(message: dict[str, Any], r: ItemReader) -> Outcome:
    inter = obj(message.get("interactive"))
    kind = inter.get("type")
    if not isinstance(kind, str):  # older payloads name the reply object only
        kind = next((k for k in INTERACTIVE_TYPES if k in inter), "unknown")
    parser = INTERACTIVE_TYPES.get(kind)
    if parser is None:  # a reply kind we don't read (call permission, payment …) is still a reply
        return Said("interactive", details={"interactive_type": r.text(kind, 128) or "unknown"})
    text, reply_id, details = parser(obj(inter.get(kind)), r)
    return Said("interactive", text, reply_id=reply_id, details={"interactive_type": kind, **details})


def _changed_number(message: dict[str, Any], r: ItemReader) -> Outcome:
    system = obj(message.get("system"))
    old, new = wa_id(message.get("from")) or wa_id(system.get("wa_id")), wa_id(system.get("new_wa_id"))
    if old is None or new is None:
        raise Malformed("user_changed_number without the old `from` and the `new_wa_id`")
    return NumberChanged(old, new, r.text(system.get("body"), 512) or None)


SYSTEM_TYPES: dict[str, MessageParser] = {
    "user_changed_number": _changed_number,
    "customer_changed_number": _changed_number,  # the name before v12
    "user_identity_changed": lambda _m, _r: Ignored(IDENTITY_CHANGED),
    "customer_identity_changed": lambda _m, _r: Ignored(IDENTITY_CHANGED),
}


def _system(message: dict[str, Any], r: ItemReader) -> Outcome:
    kind = obj(message.get("system")).get("type")
    parser = SYSTEM_TYPES.get(kind) if isinstance(kind, str) else None
    if parser is None:
        return Ignored(UNKNOWN_TYPE, f"system:{str(kind)[:64]}")
    return parser(message, r)


# `unsupported` carries what WhatsApp could not deliver in `unsupported.type`; edits and deletions
# of a message already received are not new messages.
_UNSUPPORTED_IGNORED = {"edit": EDIT, "revoke": REVOKE}


def _unsupported(message: dict[str, Any], r: ItemReader) -> Outcome:
    kind = obj(message.get("unsupported")).get("type")
    if isinstance(kind, str) and kind in _UNSUPPORTED_IGNORED:
        return Ignored(_UNSUPPORTED_IGNORED[kind], f"unsupported:{kind}")
    return Said("unsupported", details=_compact({"unsupported_type": r.scalar(kind, 128)}))


MESSAGE_TYPES: dict[str, MessageParser] = {
    "text": _text,
    "image": _media("image", captioned=True),
    "video": _media("video", captioned=True),
    "document": _media("document", captioned=True),
    "audio": _media("audio", captioned=False),
    "sticker": _media("sticker", captioned=False),
    "reaction": _reaction,
    "location": _location,
    "contacts": _contacts,
    "order": _order,
    "interactive": _interactive,
    "button": _button,
    "system": _system,
    "unsupported": _unsupported,
    "unknown": _unsupported,  # older versions' name for unsupported
    "request_welcome": lambda _m, _r: Ignored(REQUEST_WELCOME),
    "edit": lambda _m, _r: Ignored(EDIT),
    "revoke": lambda _m, _r: Ignored(REVOKE),
}


def parse_message(message: dict[str, Any], r: ItemReader) -> Outcome:
    """What one `messages[]` item says; group messages are ignored, unknown types too (with reason)."""
    if message.get("group_id") is not None:
        return Ignored(GROUP, "group message")
    kind = message.get("type")
    parser = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if parser is None:
        return Ignored(UNKNOWN_TYPE, str(kind)[:64])
    return parser(message, r)
