"""Request validation as the Cloud API does it: the accepted message, or the Meta error."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from whatsapp_sim.domain.errors import MetaError, meta_error
from whatsapp_sim.domain.templates import Template, TemplateCatalog, render

MEDIA_KEYS: dict[str, frozenset[str]] = {
    "image": frozenset({"id", "link", "caption"}),
    "video": frozenset({"id", "link", "caption"}),
    "document": frozenset({"id", "link", "caption", "filename"}),
    "audio": frozenset({"id", "link"}),
    "sticker": frozenset({"id", "link"}),
}
MESSAGE_TYPES = frozenset({*MEDIA_KEYS, "text", "template", "interactive", "reaction", "location", "contacts"})
ENVELOPE_KEYS = frozenset(
    {"messaging_product", "recipient_type", "to", "type", "context", "biz_opaque_callback_data", *MESSAGE_TYPES}
)
READ_KEYS = frozenset({"messaging_product", "status", "message_id", "typing_indicator"})
INTERACTIVE_TYPES = frozenset(
    {"button", "list", "cta_url", "flow", "product", "product_list", "catalog_message",
     "location_request_message", "address_message", "call_permission_request"}
)
TEXT_MAX = 4096
CAPTION_MAX = 1024
TEMPLATE_BODY_MAX = 1024
OPAQUE_MAX = 512
_RECIPIENT_NOISE = re.compile(r"[+\-()\s]")
_RECIPIENT = re.compile(r"[0-9]{8,15}")
# Meta refuses a parameter with a new line or a tab, or more than 4 consecutive spaces (132018).
_BAD_PARAM_TEXT = re.compile(r"[\r\n\t]| {5,}")


@dataclass(frozen=True, slots=True)
class TemplateUse:
    """The template a message uses, with its parameters and rendered body."""

    name: str
    language: str
    category: str
    parameters: list[str] | dict[str, str]
    rendered: str
    header_parameters: list[str] | dict[str, str] = field(default_factory=list)
    button_parameters: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form for inspection."""
        return {
            "name": self.name, "language": self.language, "category": self.category,
            "parameters": self.parameters, "header_parameters": self.header_parameters,
            "button_parameters": self.button_parameters,
        }


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    """A send the API accepts (subject to limits and the service window)."""

    to: str
    wa_id: str
    type: str
    content: Any
    text: str | None
    template: TemplateUse | None = None
    biz_opaque_callback_data: str | None = None
    context_message_id: str | None = None

    @property
    def free_form(self) -> bool:
        """Anything but a template needs an open customer-service window."""
        return self.type != "template"


@dataclass(frozen=True, slots=True)
class ReadReceipt:
    """A mark-as-read request (optionally with a typing indicator)."""

    message_id: str
    typing_indicator: bool = False


class _Invalid(Exception):
    def __init__(self, error: MetaError) -> None:
        super().__init__(error.message)
        self.error = error


def _fail(code: int, details: str) -> NoReturn:
    raise _Invalid(meta_error(code, details))


def normalize_recipient(to: str) -> str | None:
    """The digits of a plausible phone number (8–15 digits once + - ( ) and spaces go), else None."""
    digits = _RECIPIENT_NOISE.sub("", to)
    return digits if _RECIPIENT.fullmatch(digits) else None


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(100, f"Param {path} must be a JSON object.")
    return value


def _only(obj: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            _fail(100, f'Unexpected key "{key}" on param "{path}".')


def _string(obj: Mapping[str, Any], key: str, path: str, *, required: bool = True,
            max_len: int | None = None) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            _fail(131008, f"The parameter {path}['{key}'] is required.")
        return None
    if not isinstance(value, str):
        _fail(100, f"Param {path}['{key}'] must be a string.")
    if required and not value.strip():
        _fail(131008, f"The parameter {path}['{key}'] is required.")
    if max_len is not None and len(value) > max_len:
        _fail(100, f"Param {path}['{key}'] must be at most {max_len} characters long.")
    return value


def _required(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = _string(obj, key, path)
    assert value is not None
    return value


def validate_request(
    body: Any,
    catalog: TemplateCatalog,
    *,
    business_number: str | None = None,
    known_inbound: Callable[[str], bool] = lambda _wamid: False,
    wa_id_of: Callable[[str], str] = lambda digits: digits,
) -> AcceptedMessage | ReadReceipt | MetaError:
    """Check a `/messages` body the way Meta does; return what was accepted or the error.

    `wa_id_of` turns the recipient's digits into the WhatsApp id Meta answers (`domain.wa_ids`).
    """
    try:
        return _validate(body, catalog, business_number, known_inbound, wa_id_of)
    except _Invalid as exc:
        return exc.error


def _validate(body: Any, catalog: TemplateCatalog, business_number: str | None,
              known_inbound: Callable[[str], bool], wa_id_of: Callable[[str], str]) -> AcceptedMessage | ReadReceipt:
    body = _object(body, "(root)")
    product = body.get("messaging_product")
    if product is None:
        _fail(100, "The parameter messaging_product is required.")
    if product != "whatsapp":
        _fail(100, "Param messaging_product must be one of {WHATSAPP} - got \"" + str(product) + "\".")
    if "status" in body:
        return _read_receipt(body, known_inbound)
    _only(body, ENVELOPE_KEYS, "(root)")
    recipient_type = body.get("recipient_type", "individual")
    if recipient_type != "individual":
        _fail(100, f'Param recipient_type must be one of {{INDIVIDUAL}} - got "{recipient_type}".')
    to = body.get("to")
    if to is None or (isinstance(to, str) and not to.strip()):
        _fail(131008, "The parameter to is required.")
    if not isinstance(to, str):
        _fail(131009, "Invalid 'to' parameter: it must be a string.")
    wa_id = normalize_recipient(to)
    if wa_id is None:
        _fail(131009, f"Invalid 'to' parameter: {to!r} is not a valid phone number.")
    if business_number is not None and wa_id == business_number:
        _fail(131021, "The recipient phone number is the same as the sender phone number.")
    wa_id = wa_id_of(wa_id)
    msg_type = body.get("type", "text")
    if not isinstance(msg_type, str) or msg_type not in MESSAGE_TYPES:
        _fail(100, f"Param type must be one of {{{', '.join(sorted(MESSAGE_TYPES)).upper()}}} - got "
                   f"\"{msg_type}\".")
    for other in MESSAGE_TYPES - {msg_type}:
        if other in body:
            _fail(100, f"Param {other} is not allowed for messages of type {msg_type}.")
    if msg_type not in body:
        _fail(131008, f"The parameter {msg_type} is required.")
    opaque = _string(body, "biz_opaque_callback_data", "(root)", required=False, max_len=OPAQUE_MAX)
    context_id: str | None = None
    if "context" in body:
        context = _object(body["context"], "context")
        _only(context, frozenset({"message_id"}), "context")
        context_id = _required(context, "message_id", "context")
    content = body[msg_type]
    template: TemplateUse | None = None
    if msg_type == "text":
        text: str | None = _text(content)
    elif msg_type in MEDIA_KEYS:
        text = _media(msg_type, content)
    elif msg_type == "template":
        template = _template(content, catalog)
        text = template.rendered
    elif msg_type == "interactive":
        text = _interactive(content)
    elif msg_type == "reaction":
        text = _reaction(content)
    elif msg_type == "location":
        text = _location(content)
    else:
        text = _contacts(content)
    return AcceptedMessage(to=to, wa_id=wa_id, type=msg_type, content=content, text=text, template=template,
                           biz_opaque_callback_data=opaque, context_message_id=context_id)


def _read_receipt(body: dict[str, Any], known_inbound: Callable[[str], bool]) -> ReadReceipt:
    _only(body, READ_KEYS, "(root)")
    if body["status"] != "read":
        _fail(100, f'Param status must be one of {{READ}} - got "{body["status"]}".')
    message_id = _required(body, "message_id", "(root)")
    typing = False
    if "typing_indicator" in body:
        indicator = _object(body["typing_indicator"], "typing_indicator")
        _only(indicator, frozenset({"type"}), "typing_indicator")
        if indicator.get("type") != "text":
            _fail(100, 'Param typing_indicator[\'type\'] must be one of {TEXT}.')
        typing = True
    if not known_inbound(message_id):
        _fail(131009, f"Invalid message_id: {message_id} is not a message received by this number.")
    return ReadReceipt(message_id=message_id, typing_indicator=typing)


def _text(content: Any) -> str:
    obj = _object(content, "text")
    _only(obj, frozenset({"body", "preview_url"}), "text")
    if "preview_url" in obj and not isinstance(obj["preview_url"], bool):
        _fail(100, "Param text['preview_url'] must be a boolean.")
    return _required_text(obj, "body", "text", TEXT_MAX)


def _required_text(obj: Mapping[str, Any], key: str, path: str, max_len: int) -> str:
    value = _string(obj, key, path, max_len=max_len)
    assert value is not None
    return value


def _media(kind: str, content: Any) -> str | None:
    obj = _object(content, kind)
    _only(obj, MEDIA_KEYS[kind], kind)
    has_id, has_link = obj.get("id") is not None, obj.get("link") is not None
    if not has_id and not has_link:
        _fail(131008, f"The parameter {kind}['id'] or {kind}['link'] is required.")
    if has_id and has_link:
        _fail(100, f"Param {kind} must have exactly one of id or link.")
    if has_id:
        _required(obj, "id", kind)
    else:
        link = _required(obj, "link", kind)
        if not re.match(r"https?://[^\s/]+", link):
            _fail(100, f"Param {kind}['link'] must be a valid http(s) URL.")
    _string(obj, "filename", kind, required=False, max_len=240)
    return _string(obj, "caption", kind, required=False, max_len=CAPTION_MAX)


def _reaction(content: Any) -> str:
    obj = _object(content, "reaction")
    _only(obj, frozenset({"message_id", "emoji"}), "reaction")
    _required(obj, "message_id", "reaction")
    emoji = obj.get("emoji")
    if not isinstance(emoji, str):
        _fail(131008, "The parameter reaction['emoji'] is required.")
    return emoji


def _location(content: Any) -> str | None:
    obj = _object(content, "location")
    _only(obj, frozenset({"latitude", "longitude", "name", "address"}), "location")
    for key, bound in (("latitude", 90.0), ("longitude", 180.0)):
        value = obj.get(key)
        if value is None:
            _fail(131008, f"The parameter location['{key}'] is required.")
        try:
            number = float(value)
        except (TypeError, ValueError):
            _fail(100, f"Param location['{key}'] must be a number.")
        if not -bound <= number <= bound:
            _fail(100, f"Param location['{key}'] is out of range.")
    return _string(obj, "name", "location", required=False)


def _contacts(content: Any) -> str:
    if not isinstance(content, list) or not content:
        _fail(100, "Param contacts must be a non-empty array.")
    names = []
    for i, item in enumerate(content):
        name = _object(_object(item, f"contacts[{i}]").get("name"), f"contacts[{i}]['name']")
        names.append(_required(name, "formatted_name", f"contacts[{i}]['name']"))
    return ", ".join(names)


def _interactive(content: Any) -> str | None:
    obj = _object(content, "interactive")
    _only(obj, frozenset({"type", "header", "body", "footer", "action"}), "interactive")
    kind = obj.get("type")
    if kind is None:
        _fail(131008, "The parameter interactive['type'] is required.")
    if not isinstance(kind, str) or kind not in INTERACTIVE_TYPES:
        _fail(100, f'Param interactive[\'type\'] is invalid - got "{kind}".')
    text: str | None = None
    if "body" in obj or kind in ("button", "list", "cta_url"):
        body = _object(obj.get("body"), "interactive['body']") if obj.get("body") is not None else None
        if body is None:
            _fail(131008, "The parameter interactive['body'] is required.")
        text = _required_text(body, "text", "interactive['body']", CAPTION_MAX)
    if "footer" in obj:
        _string(_object(obj["footer"], "interactive['footer']"), "text", "interactive['footer']", max_len=60)
    if obj.get("action") is None and kind != "location_request_message":
        _fail(131008, "The parameter interactive['action'] is required.")
    action = _object(obj.get("action", {}), "interactive['action']")
    if kind == "button":
        _reply_buttons(action)
    elif kind == "list":
        _list_action(action)
    return text


def _reply_buttons(action: dict[str, Any]) -> None:
    buttons = action.get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        _fail(100, "Param interactive['action']['buttons'] must have between 1 and 3 elements.")
    ids: set[str] = set()
    for i, raw in enumerate(buttons):
        path = f"interactive['action']['buttons'][{i}]"
        button = _object(raw, path)
        if button.get("type") != "reply":
            _fail(100, f"Param {path}['type'] must be one of {{REPLY}}.")
        reply = _object(button.get("reply"), f"{path}['reply']")
        button_id = _string(reply, "id", f"{path}['reply']", max_len=256) or ""
        _string(reply, "title", f"{path}['reply']", max_len=20)
        if button_id in ids:
            _fail(100, "Buttons must have unique ids.")
        ids.add(button_id)


def _list_action(action: dict[str, Any]) -> None:
    _string(action, "button", "interactive['action']", max_len=20)
    sections = action.get("sections")
    if not isinstance(sections, list) or not 1 <= len(sections) <= 10:
        _fail(100, "Param interactive['action']['sections'] must have between 1 and 10 elements.")
    ids: set[str] = set()
    for i, raw in enumerate(sections):
        path = f"interactive['action']['sections'][{i}]"
        rows = _object(raw, path).get("rows")
        if not isinstance(rows, list) or not rows:
            _fail(131008, f"The parameter {path}['rows'] is required.")
        for j, row_raw in enumerate(rows):
            row = _object(row_raw, f"{path}['rows'][{j}]")
            row_id = _string(row, "id", f"{path}['rows'][{j}]", max_len=200) or ""
            _string(row, "title", f"{path}['rows'][{j}]", max_len=24)
            _string(row, "description", f"{path}['rows'][{j}]", required=False, max_len=72)
            if row_id in ids:
                _fail(100, "Row ids must be unique.")
            ids.add(row_id)
    if len(ids) > 10:
        _fail(100, "A list message can have at most 10 rows in total.")


# --- templates -----------------------------------------------------------------------------------


def _template(content: Any, catalog: TemplateCatalog) -> TemplateUse:
    obj = _object(content, "template")
    _only(obj, frozenset({"name", "language", "components", "namespace"}), "template")
    name = _required(obj, "name", "template")
    if obj.get("language") is None:
        _fail(131008, "The parameter template['language'] is required.")
    language = _object(obj["language"], "template['language']")
    _only(language, frozenset({"code", "policy"}), "template['language']")
    code = _required(language, "code", "template['language']")
    if "policy" in language and language["policy"] != "deterministic":
        _fail(100, "Param template['language']['policy'] must be one of {DETERMINISTIC}.")
    template = catalog.get(name, code)
    if template is None or template.status in ("PENDING", "REJECTED"):
        _fail(132001, f"template name ({name}) does not exist in {code}")
    if template.status == "PAUSED":
        _fail(132015, f"template name ({name}) in {code} is paused because of low quality")
    if template.status == "DISABLED":
        _fail(132016, f"template name ({name}) in {code} has been disabled because of low quality")
    components = obj.get("components", [])
    if not isinstance(components, list):
        _fail(100, "Param template['components'] must be an array.")
    by_type: dict[str, dict[str, Any]] = {}
    buttons: dict[int, dict[str, Any]] = {}
    all_params: list[dict[str, Any]] = []
    for i, raw in enumerate(components):
        path = f"template['components'][{i}]"
        component = _object(raw, path)
        _only(component, frozenset({"type", "sub_type", "index", "parameters"}), path)
        kind = str(component.get("type", "")).lower()
        if kind not in ("header", "body", "footer", "button"):
            _fail(100, f"Param {path}['type'] must be one of {{HEADER, BODY, FOOTER, BUTTON}}.")
        params = component.get("parameters", [])
        if not isinstance(params, list):
            _fail(100, f"Param {path}['parameters'] must be an array.")
        component = {**component, "parameters": [_object(p, f"{path}['parameters'][{j}]")
                                                 for j, p in enumerate(params)]}
        if kind == "button":
            index = _button_index(component, path)
            if index in buttons:
                _fail(100, f"Duplicate button component for index {index}.")
            buttons[index] = component
        else:
            if kind in by_type:
                _fail(100, f"Duplicate {kind} component.")
            by_type[kind] = component
            all_params.extend(component["parameters"])
    named = [p for p in all_params if "parameter_name" in p]
    if named and len(named) != len(all_params):
        _fail(100, "Named and positional parameters cannot be mixed in one request.")
    body_values = _text_params(by_type.get("body"), template.body_params, template, "body")
    rendered = render(template.body, body_values)
    if len(rendered) > TEMPLATE_BODY_MAX:
        _fail(132005, f"body: translated text is {len(rendered)} characters, more than {TEMPLATE_BODY_MAX}")
    header_values = _header(by_type.get("header"), template)
    button_values = _buttons(buttons, template)
    parameters: list[str] | dict[str, str]
    header_parameters: list[str] | dict[str, str]
    if "media" in header_values:
        header_parameters = [header_values["media"]]
    elif template.parameter_format == "NAMED":
        header_parameters = dict(header_values)
    else:
        header_parameters = [header_values[k] for k in template.header_params]
    if template.parameter_format == "NAMED":
        parameters = dict(body_values)
    else:
        parameters = [body_values[k] for k in template.body_params]
    return TemplateUse(name=name, language=code, category=template.category, parameters=parameters,
                       rendered=rendered, header_parameters=header_parameters,
                       button_parameters=button_values)


def _button_index(component: dict[str, Any], path: str) -> int:
    if component.get("sub_type") is None:
        _fail(131008, f"The parameter {path}['sub_type'] is required.")
    index = component.get("index")
    if index is None:
        _fail(131008, f"The parameter {path}['index'] is required.")
    if isinstance(index, bool) or not (isinstance(index, int) or (isinstance(index, str) and index.isdigit())):
        _fail(100, f"Param {path}['index'] must be a non-negative integer.")
    return int(index)


def _param_value(param: dict[str, Any], where: str) -> str:
    kind = param.get("type")
    if kind == "text":
        value = param.get("text")
        if not isinstance(value, str) or not value.strip():
            _fail(131008, f"{where}: Parameter of type text is missing text value")
        if _BAD_PARAM_TEXT.search(value):
            _fail(132018, "Param text cannot have new-line/tab characters or more than 4 consecutive spaces")
        return value
    if kind in ("currency", "date_time"):
        inner = _object(param.get(kind), f"{where} {kind}")
        fallback = _required(inner, "fallback_value", f"{where} {kind}")
        if kind == "currency":
            _required(inner, "code", f"{where} {kind}")
            if not isinstance(inner.get("amount_1000"), int):
                _fail(131008, f"{where}: currency parameter needs an integer amount_1000")
        return fallback
    _fail(100, f"{where}: parameter type {kind!r} is not valid here")


def _text_params(component: dict[str, Any] | None, expected: tuple[str, ...], template: Template,
                 where: str) -> dict[str, str]:
    params: list[dict[str, Any]] = component["parameters"] if component else []
    if not params and not expected:
        return {}
    is_named = bool(params) and "parameter_name" in params[0]
    if params and is_named != (template.parameter_format == "NAMED"):
        _fail(132012, f"{where}: template {template.name} expects {template.parameter_format.lower()} "
                      f"parameters")
    if template.parameter_format == "NAMED":
        values: dict[str, str] = {}
        for param in params:
            pname = param.get("parameter_name")
            if not isinstance(pname, str) or not pname:
                _fail(100, f"{where}: parameter_name must be a non-empty string")
            if pname in values:
                _fail(100, f"{where}: duplicate parameter_name {pname!r}")
            values[pname] = _param_value(param, where)
        if set(values) != set(expected):
            _fail(132000, f"{where}: parameter names ({', '.join(sorted(values))}) do not match the "
                          f"expected parameter names ({', '.join(sorted(expected))})")
        return values
    if len(params) != len(expected):
        _fail(132000, f"{where}: number of localizable_params ({len(params)}) does not match the expected "
                      f"number of params ({len(expected)})")
    return {name: _param_value(param, where) for name, param in zip(expected, params, strict=True)}


def _header(component: dict[str, Any] | None, template: Template) -> dict[str, str]:
    fmt = template.header_format
    if fmt is None or fmt == "TEXT":
        params = component["parameters"] if component else []
        if fmt is None and params:
            _fail(132000, f"header: number of localizable_params ({len(params)}) does not match the "
                          "expected number of params (0)")
        return _text_params(component, template.header_params, template, "header")
    params = component["parameters"] if component else []
    received = str(params[0].get("type", "UNKNOWN")).upper() if params else "UNKNOWN"
    if len(params) != 1 or received != fmt:
        _fail(132012, f"header: Format mismatch, expected {fmt}, received {received}")
    media = _object(params[0].get(fmt.lower()), f"header {fmt.lower()}")
    if (media.get("id") is None) == (media.get("link") is None):
        _fail(131008, f"header: {fmt.lower()} needs exactly one of id or link")
    return {"media": str(media.get("link") or media.get("id"))}


def _buttons(components: dict[int, dict[str, Any]], template: Template) -> dict[str, str]:
    values: dict[str, str] = {}
    for index, component in sorted(components.items()):
        sub_type = str(component["sub_type"]).lower()
        button = template.buttons[index] if index < len(template.buttons) else None
        if button is None or button.sub_type != sub_type:
            _fail(131009, f"Button at index {index} of type {sub_type.title()} does not exist")
        params = component["parameters"]
        where = f"button {index}"
        if sub_type == "url":
            want = 1 if button.dynamic else 0
            if len(params) != want:
                _fail(132000, f"{where}: number of localizable_params ({len(params)}) does not match the "
                              f"expected number of params ({want})")
            if params:
                values[str(index)] = _param_value(params[0], where)
        elif sub_type == "quick_reply":
            if len(params) > 1:
                _fail(132000, f"{where}: a quick reply button takes at most one payload")
            if params:
                if params[0].get("type") != "payload":
                    _fail(100, f"{where}: quick reply parameters must be of type payload")
                values[str(index)] = _required(params[0], "payload", where)
        elif sub_type == "copy_code":
            if len(params) != 1 or params[0].get("type") != "coupon_code":
                _fail(132000, f"{where}: a copy code button takes exactly one coupon_code parameter")
            values[str(index)] = _required(params[0], "coupon_code", where)
    for index, button in enumerate(template.buttons):
        if button.dynamic and index not in components:
            _fail(131008, f"buttons: Button at index {index} of type Url requires a parameter")
    return values
