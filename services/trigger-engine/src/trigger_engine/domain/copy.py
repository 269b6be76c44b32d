"""Message copy in the contact's conventions: money, dates, URLs with variables, the contact's zone.

Money and dates are Babel's (CLDR) formats for a locale; see `format_locale` for which locale.
"""

from __future__ import annotations

import string
import unicodedata
from copy import copy
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import NumberPattern, get_currency_symbol

from scrm_common.identity import whatsapp_forms
from scrm_common.money import minor_units  # ISO 4217 minor units, shared with reporting and the segmenter
from scrm_common.phones import zone_for_phone
from trigger_engine.domain.text import fold_whitespace


def format_locale(locale: str | None, language: str) -> str:
    """The Babel locale to format a contact's money and dates in.

    The contact's own locale (`de-CH` → `de_CH`: Swiss grouping) when it speaks the template's
    language; otherwise the template language (`de`, `en_US`), so one sentence never mixes two
    languages' conventions (a French contact reading the English template sees `€149.90`).
    """
    fallback = language.replace("-", "_")
    if locale:
        candidate = locale.replace("-", "_")
        try:
            parsed = Locale.parse(candidate)
            if parsed.language == Locale.parse(fallback).language:
                return candidate
        except (UnknownLocaleError, ValueError):
            pass
    return fallback


def money(amount: float | Decimal, currency: str, locale: str) -> str:
    """`amount` of `currency` as written in `locale`, with the currency's ISO 4217 minor units.

    `€149.90` (en_US), `149,90 €` (de), `¥12,800` / `12.800 ¥` (JPY has none), `KWD 12.345` (three).
    The amount is taken as its decimal text (no binary float artefacts) and rounded half up.
    No-break spaces come out as plain spaces, as every template parameter's whitespace does.
    """
    digits = minor_units(currency)
    exact = Decimal(str(amount)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return fold_whitespace(_currency_pattern(currency, locale).apply(exact, _locale(locale), currency=currency,
                                                                     currency_digits=False))


@lru_cache(maxsize=256)
def _locale(name: str) -> Locale:
    return Locale.parse(name)


@lru_cache(maxsize=1024)
def _currency_pattern(currency: str, locale: str) -> NumberPattern:
    """The locale's standard currency pattern with the currency's minor units (built once per pair)."""
    pattern: NumberPattern = copy(_locale(locale).currency_formats["standard"])
    pattern.frac_prec = (minor_units(currency),) * 2
    # CLDR currencySpacing (Babel leaves it out): a symbol that ends or starts with a letter is kept
    # apart from the digits beside it — `KWD 12.345`, not `KWD12.345`; `€149.90` stays as it is.
    symbol = get_currency_symbol(currency, locale)
    if symbol and not _is_symbol_or_space(symbol[-1]):
        positive, negative = pattern.prefix
        pattern.prefix = (_spaced_after(positive), _spaced_after(negative))
    if symbol and not _is_symbol_or_space(symbol[0]):
        positive, negative = pattern.suffix
        pattern.suffix = (_spaced_before(positive), _spaced_before(negative))
    return pattern


def _is_symbol_or_space(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "SZ"


def _spaced_after(affix: str) -> str:
    return affix + " " if affix.endswith("¤") else affix


def _spaced_before(affix: str) -> str:
    return " " + affix if affix.startswith("¤") else affix


def day(value: date, locale: str) -> str:
    """A date as `locale` writes it unambiguously: `08.03.2026` (de), `Mar 8, 2026` (en_US)."""
    return format_date(value, format="medium", locale=locale)


def local_day(instant: datetime, zone: ZoneInfo) -> date:
    """The calendar date of `instant` in `zone`, whatever UTC offset the instant was written with."""
    return instant.astimezone(zone).date()


def contact_zone(timezone: str | None, phone: str | None, wa_id: str | None = None) -> ZoneInfo:
    """The contact's time zone: their own, else their number's country's (R-T5.1), else UTC."""
    if timezone:
        try:
            return ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a tzdata directory (`Europe`)
            pass
    numbers = [phone] if phone else []
    if wa_id:
        numbers += ["+" + form for form in whatsapp_forms(wa_id)]
    for number in numbers:
        zone = zone_for_phone(number, default="")
        if zone:
            return ZoneInfo(zone)
    return ZoneInfo("UTC")


def url_with(template: str, **values: str) -> str:
    """`template` (`https://shop.example/t/{order_id}`) with each `{name}` replaced by its value URL-encoded,
    `/` and `#` too: `#1001` → `%231001`, `SO 1001/B` → `SO%201001%2FB`; `{{` and `}}` are a brace.

    The value is substituted as text, never through `str.format`: the result is the template's literal text
    and the encoded values, nothing more. Raises ValueError for a field that is not a bare name of `values`
    (a format spec or conversion: `TenantSettings` refuses such a template).
    """
    out: list[str] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        if spec or conversion is not None or name not in values:
            raise ValueError(f"{template!r}: the field {{{name}}} is not a bare placeholder of {sorted(values)}")
        out.append(quote(values[name], safe=""))
    return "".join(out)
