"""Settings as data: what a tenant may tune, as typed models whose defaults are SPEC.md's.

`FlowSettings` is what every flow has (on/off, the account it sends from, its template per language);
each flow's own model extends it beside its `decide` (`welcome.WelcomeSettings`, …) and is registered in
`flows.FLOWS`. `TenantSettings` is the shop's: time zone, business hours, default language, URLs, home
region, default account and the send gate's rules (`gate`: quiet hours, frequency cap, fatigue). Models are
frozen and refuse unknown keys.

Stored settings are what a tenant changed from the defaults (`changed_from`); the effective settings are
the defaults with those changes (`with_changes`). A PATCH is a JSON merge patch (RFC 7396, `merge_patch`)
of the effective settings: objects merge per key (`templates`, `business_hours`), `null` removes a key —
a removed setting is back at its default — and lists are replaced whole.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from scrm_common.contracts.wire import PLAIN_TEXT_PATTERN

# A template language as Meta names it (`en_US`, `de`, `pt_BR`, `zh_Hant`… CLOUD-API.md §2.4).
LANGUAGE_PATTERN = r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$"
Language = Annotated[str, Field(pattern=LANGUAGE_PATTERN, max_length=12,
                                description="a template language: `en_US`, `de`")]
# A template name as Meta allows it: lowercase letters, digits and underscores.
TemplateName = Annotated[str, Field(pattern=r"^[a-z0-9_]{1,512}$", description="a template name: `order_confirmation`")]
# A WhatsApp account: the phone number id (digits as Meta gives them; test ids may carry letters).
AccountId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="a WhatsApp phone number id")]
Templates = Annotated[dict[Language, TemplateName], Field(min_length=1, max_length=50)]


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


@lru_cache(maxsize=1)
def _regions() -> frozenset[str]:
    codes = (str(code) for code in Locale("en").territories)
    return frozenset(code for code in codes if len(code) == 2 and code.isalpha() and code != "ZZ")


def _known_region(code: str) -> str:
    if code not in _regions():
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 region code (such as DE, FR, US; EU for the union)")
    return code


# A region code (ISO 3166-1 alpha-2, as CLDR knows them, plus `EU`); lowercase is accepted and upper-cased.
Region = Annotated[str, BeforeValidator(_upper), Field(pattern=r"^[A-Z]{2}$"), AfterValidator(_known_region)]


# A shop URL is a template parameter once rendered (SendMessage: at most 1024 characters, Meta's limit too).
URL_MAX_CHARS = 1024
# What one `{order_id}` may become: an order number (at most 128 characters) with each character URL-encoded.
_PLACEHOLDER_MAX_CHARS = 3 * 128


def _shop_url(url: str, *, placeholders: frozenset[str] = frozenset()) -> str:
    """`url` if it is an absolute http(s) URL naming a host whose `{…}` fields are bare `placeholders`
    (`{order_id}`: no format spec, no conversion — it is substituted as text, never `str.format`ted), and
    which stays within `URL_MAX_CHARS` with each placeholder replaced by the longest value it may get."""
    parts = urlsplit(url.replace("{", "").replace("}", ""))
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in url):
        raise ValueError("must be an absolute http:// or https:// URL without spaces")
    try:
        parsed = list(string.Formatter().parse(url))
    except ValueError:
        raise ValueError("has an unbalanced { or }; write {{ and }} for braces in the URL itself") from None
    allowed = ", ".join("{" + p + "}" for p in sorted(placeholders)) or "none"
    fields = [(name, spec, conversion) for _, name, spec, conversion in parsed if name is not None]
    for name, spec, conversion in fields:
        if name not in placeholders:
            raise ValueError(f"has the placeholder {{{name}}}; the placeholders allowed here: {allowed}")
        if spec or conversion is not None:
            written = "{" + name + (f"!{conversion}" if conversion is not None else "") + (f":{spec}" if spec else "")
            written += "}"
            raise ValueError(f"has {written}; write {{{name}}}: format specs and conversions are not allowed")
    longest = sum(len(text) for text, *_ in parsed) + len(fields) * _PLACEHOLDER_MAX_CHARS
    if longest > URL_MAX_CHARS:
        raise ValueError(f"is too long: with every {{order_id}} replaced by the longest order number (128 "
                         f"characters, URL-encoded) it is {longest} characters; at most {URL_MAX_CHARS}")
    return url


ShopUrl = Annotated[str, Field(max_length=URL_MAX_CHARS, pattern=PLAIN_TEXT_PATTERN)]


def _tracking_url(url: str) -> str:
    return _shop_url(url, placeholders=frozenset({"order_id"}))


def _support_url(url: str) -> str:
    return _shop_url(url)


def _time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a tzdata directory (`Europe`)
        raise ValueError(f"{name!r} is not an IANA time zone (such as Europe/Berlin)") from None
    return name


_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
ClockTime = Annotated[str, Field(pattern=_HHMM.pattern, description="local time `HH:MM`, 00:00–23:59")]
Weekday = Annotated[int, Field(ge=1, le=7, description="ISO weekday: 1 Monday … 7 Sunday")]


class SettingsModel(BaseModel):
    """Settings are values: frozen, and an unknown key is an error, never ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class BusinessHours(SettingsModel):
    """When the shop's people answer (R-A8: outside 22:00–08:00 an auto-reply says when), in `time_zone`."""

    start: ClockTime = "08:00"
    end: ClockTime = "22:00"
    days: list[Weekday] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7], min_length=1, max_length=7)

    @model_validator(mode="after")
    def _ordered(self) -> BusinessHours:
        if self.start >= self.end:
            raise ValueError(f"start ({self.start}) must be before end ({self.end})")
        if len(set(self.days)) != len(self.days):
            raise ValueError("days names a weekday twice")
        return self


class QuietHoursSettings(SettingsModel):
    """R-S4: marketing reaches a contact only between `start` (inclusive) and `end` (exclusive) of the contact's
    own local wall-clock time (an `end` before `start` crosses midnight); outside it a marketing message waits
    for the next allowed instant, or is dropped when it would expire first. Utility messages are exempt, and so
    is a flow whose settings say `quiet_hours_exempt` (R-T5 birthday)."""

    start: ClockTime = Field(default="08:00", description="local time from which marketing may reach a contact "
                                                          "(R-S4: 08:00)")
    end: ClockTime = Field(default="22:00", description="local time from which marketing waits again (R-S4: 22:00); "
                                                        "before `start`: the allowed hours cross midnight")

    @model_validator(mode="after")
    def _a_window(self) -> QuietHoursSettings:
        if self.start == self.end:
            raise ValueError(f"start and end are both {self.start}: marketing would have no allowed hours (or all "
                             "of them); give two different times")
        return self


class FrequencyCapSettings(SettingsModel):
    """R-S5: at most `limit` marketing messages per contact per rolling `window_days`, over all flows and
    broadcasts, counting what was sent or is in flight; a contact's own lower limit wins."""

    limit: int = Field(default=3, ge=0, le=100,
                       description="marketing messages per contact per window (R-S5: 3); 0: none at all")
    window_days: int = Field(default=7, ge=1, le=90, description="the rolling window, days (R-S5: 7)")


# The fatigue rules a flow may be subject to: R-T4.5 unread reminders, R-T6.3 cart reminders.
FatigueRule = Literal["R-T4.5", "R-T6.3"]


class FatigueSettings(SettingsModel):
    """R-T4.5 and R-T6.3: a reminder kind is paused for a contact for `pause_days` once their fatigue score
    for it is over its threshold. Applies to the flows that name a fatigue rule (`decide.FATIGUE_RULES`)."""

    unread_reminder_threshold: float = Field(
        default=1.5, ge=0, le=100, description="R-T4.5: 0.7 × reminders in the recent window + 0.3 × average reply "
                                               "delay (days) above this pauses unread reminders (SPEC: 1.5)")
    cart_reminder_threshold: float = Field(
        default=1.8, ge=0, le=100, description="R-T6.3: reminders in the last 7 days × 0.6 − read rate × 0.4 above "
                                               "this pauses cart reminders (SPEC: 1.8)")
    pause_days: int = Field(default=7, ge=1, le=90, description="days a fatigued kind stays paused (SPEC: 7)")

    def threshold(self, rule: FatigueRule) -> float:
        """The threshold of fatigue rule `rule` ("R-T4.5" unread reminders, "R-T6.3" cart reminders)."""
        return self.unread_reminder_threshold if rule == "R-T4.5" else self.cart_reminder_threshold


class GateSettings(SettingsModel):
    """How the sender's send gate treats the tenant's messages (R-S4 quiet hours, R-S5 frequency cap, R-T4.5 /
    R-T6.3 fatigue): stamped on every message the engine decides, as of the decision."""

    quiet_hours: QuietHoursSettings = Field(default_factory=QuietHoursSettings,
                                            description="R-S4: when marketing may reach a contact, local time")
    frequency_cap: FrequencyCapSettings = Field(default_factory=FrequencyCapSettings,
                                                description="R-S5: marketing messages per contact per window")
    fatigue: FatigueSettings = Field(default_factory=FatigueSettings,
                                     description="R-T4.5 / R-T6.3: fatigue thresholds and the pause")


class TenantSettings(SettingsModel):
    """The shop's own settings; every flow reads them. Defaults: the installation's (`SCRM_SHOP_*`)."""

    time_zone: Annotated[str, Field(max_length=64), AfterValidator(_time_zone)] = Field(
        default="Europe/Berlin", description="IANA time zone of the shop's business hours")
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    default_language: Language = Field(
        default="en_US", description="the template language for contacts whose language a flow has no template for")
    tracking_url: Annotated[ShopUrl, AfterValidator(_tracking_url)] = Field(
        default="https://shop.example/t/{order_id}",
        description="order tracking link (R-T2.2); `{order_id}` is replaced by the order number, URL-encoded (no "
                    "format spec or conversion); at most 1024 characters with the longest order number in it")
    support_url: Annotated[ShopUrl, AfterValidator(_support_url)] = Field(
        default="https://shop.example/help", description="support link (R-T2.2)")
    home_region: Region = Field(default="DE", description="where the shop ships from (R-T2.3: base days by region)")
    default_account_id: AccountId | None = Field(
        default=None, description="the WhatsApp account flows send from unless a flow names its own; null: the "
                                  "tenant's earliest registered account")
    gate: GateSettings = Field(default_factory=GateSettings,
                               description="the send gate's rules for the tenant's messages: quiet hours (R-S4), "
                                           "frequency cap (R-S5), fatigue (R-T4.5, R-T6.3)")


class FlowSettings(SettingsModel):
    """What every flow has: whether it runs, the account it sends from, its template per language and whether
    its marketing messages ignore the tenant's quiet hours (R-S4; R-T5 birthday).

    Subclasses give `templates` its default and add the flow's SPEC numbers.
    """

    enabled: bool = Field(default=True, description="false: the flow decides nothing but `flow disabled`")
    account_id: AccountId | None = Field(
        default=None, description="the WhatsApp account (phone number id) this flow sends from; null: the "
                                  "tenant's default account")
    templates: Templates = Field(default_factory=dict, description="template name per language")
    quiet_hours_exempt: bool = Field(
        default=False, description="true: the flow's marketing messages ignore the tenant's quiet hours (R-S4; R-T5 "
                                   "birthday is the explicit exception); utility messages are exempt anyway")


S = TypeVar("S", bound=SettingsModel)


def language_for(locale: str | None, languages: Sequence[str] | frozenset[str], default: str) -> str:
    """The template language for a contact's locale among `languages` (`de-DE` → `de`, `en-GB` → `en_US`),
    else `default`."""
    if locale:
        normalised = locale.replace("-", "_")
        if normalised in languages:
            return normalised
        base = normalised.split("_", 1)[0]
        if base in languages:
            return base
        for language in sorted(languages):
            if language.split("_", 1)[0] == base:
                return language
    return default


# ---------------------------------------------------------------------------------------------------------
# Changes: merge patches, what differs from the defaults, errors per field.


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: `patch` applied to `target` (neither is changed)."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def changed_from(settings: SettingsModel, defaults: SettingsModel) -> dict[str, Any]:
    """The top-level fields of `settings` whose value differs from `defaults`', as JSON values."""
    mine, theirs = settings.model_dump(mode="json"), defaults.model_dump(mode="json")
    return {name: value for name, value in mine.items() if theirs.get(name) != value}


def with_changes(kind: type[S], defaults: S, changes: Mapping[str, Any]) -> tuple[S, list[str]]:
    """`defaults` with stored `changes`, and the names of changes left out because they no longer validate
    (a setting a later release dropped or narrowed): a stored value never stops the engine."""
    data = {**defaults.model_dump(mode="json"), **changes}
    dropped: list[str] = []
    while True:
        try:
            return kind.model_validate(data), dropped
        except ValidationError as exc:
            names = {str(e["loc"][0]) for e in exc.errors() if e["loc"]} & set(changes) - set(dropped)
            if not names:
                return defaults, sorted(changes)
            fallback = defaults.model_dump(mode="json")
            for name in names:
                if name in fallback:
                    data[name] = fallback[name]
                else:
                    data.pop(name, None)
            dropped.extend(sorted(names))


def field_faults(exc: ValidationError, *, prefix: str = "body") -> list[tuple[str, str]]:
    """One (field, reason) per error of `exc`: `body.discount_percent`, `body.templates.de`; an unknown key's
    reason says it is unknown."""
    faults: list[tuple[str, str]] = []
    for error in exc.errors():
        field = ".".join([prefix, *(str(p) for p in error["loc"])])
        if error["type"] == "extra_forbidden":
            reason = "unknown setting"
        elif error["type"] == "value_error" and "error" in (error.get("ctx") or {}):
            reason = str(error["ctx"]["error"])
        else:
            reason = str(error["msg"])
        faults.append((field, reason))
    return faults
