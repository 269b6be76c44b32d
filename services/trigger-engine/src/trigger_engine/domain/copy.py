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


def fit_list(parts: list[str], *, budget: int, more: str) -> str:
    """Join parts with ", " within `budget` characters, eliding the rest as `more` (with {n})."""
    shown: list[str] = []
    for i, part in enumerate(parts):
        remaining = len(parts) - i - 1
        suffix = (" " + more.format(n=remaining)) if remaining else ""
        candidate = ", ".join([*shown, part]) + suffix
        if len(candidate) > budget and shown:
            return ", ".join(shown) + " " + more.format(n=len(parts) - i)
        if len(candidate) > budget:
            keep = max(1, budget - len(suffix) - 1)
            return part[:keep] + "…" + suffix
        shown.append(part)
    return ", ".join(shown)
