"""Small formatting helpers for message copy: money, dates, lists that fit a budget."""

from __future__ import annotations

from datetime import date

_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "CHF": "CHF "}


def money(amount: float, currency: str, language: str) -> str:
    """`€149.90` in English, `149,90 €` in German."""
    if language.startswith("de"):
        number = f"{amount:,.2f}".replace(",", "X").replace(".", ",").replace("X", ".")
        symbol = _SYMBOLS.get(currency, currency + " ").strip()
        return f"{number} {symbol}"
    symbol = _SYMBOLS.get(currency, currency + " ")
    return f"{symbol}{amount:,.2f}"


def day(value: date, language: str) -> str:
    """`29.11.2026` in German, `2026-11-29` otherwise (unambiguous everywhere)."""
    if language.startswith("de"):
        return value.strftime("%d.%m.%Y")
    return value.isoformat()


def variable(text: str) -> str:
    """Text safe as a template variable: no template braces, no line breaks (Meta rejects both)."""
    return " ".join(text.replace("{{", "{ {").replace("}}", "} }").split())
