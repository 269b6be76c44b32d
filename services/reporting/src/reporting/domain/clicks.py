"""Clicked messages (R-R1 "clicked", click rate = clicked / delivered): each message counts once.

A message is clicked when any of its tracked links was followed at least once. `link.clicked` names its
message by the send's `idempotency_key`; one message, however many clicks of however many of its links,
counts once in `clicked` — on the UTC day of its first click, for its flow: the click's `data.flow`, else
the link's `utm_campaign` (R-R4 tags every link with it), else none. Clicks arriving out of order converge:
an earlier click than the one counted moves the message's count to its own day (and flow).

A click without an idempotency key (published before `link.clicked` named its message) cannot be told
apart from another click of the same message: it keeps counting once per event.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict

from reporting.domain.messages import Cell, Metric, utc_day
from scrm_common.contracts.events import LinkClickData, LinkClicked


class ClickSeen(BaseModel):
    """A message's click as the report keeps it: the message (`idempotency_key`), when, and its flow."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    idempotency_key: str
    at: datetime
    flow: str | None = None


def click_flow(url: str) -> str | None:
    """The flow a clicked link belongs to: its `utm_campaign` parameter (R-R4 tags links with it)."""
    values = parse_qs(urlsplit(url).query).get("utm_campaign")
    return values[0] if values and values[0] else None


def _flow(data: LinkClickData) -> str | None:
    """The message's flow: the click names it, else the link's utm_campaign (from the url, else as given)."""
    return data.flow or click_flow(data.url) or data.campaign or None


def click_seen(event: LinkClicked) -> ClickSeen | None:
    """The click of a message, or None when the click names no message (counted per event: `click_cell`)."""
    d = event.data
    if not d.idempotency_key:
        return None
    return ClickSeen(idempotency_key=d.idempotency_key, at=event.occurred_at, flow=_flow(d))


def click_cell(event: LinkClicked) -> Cell:
    """A click naming no message counts once per event, on its day, for the flow its link names (or none)."""
    return utc_day(event.occurred_at), _flow(event.data), Metric.CLICKED


def _order(click: ClickSeen) -> tuple[datetime, bool, str]:
    """Earlier first; on a tie, one naming a flow, then by flow: the same first click in any arrival order."""
    return click.at, click.flow is None, click.flow or ""


def first_click(stored: ClickSeen | None, new: ClickSeen) -> ClickSeen:
    """The message's first click, knowing `stored` (its first click so far, None if never clicked) and `new`."""
    if stored is None or _order(new) < _order(stored):
        return new
    return stored


def first_clicks(clicks: Iterable[tuple[str, ClickSeen]]) -> list[tuple[str, ClickSeen]]:
    """Each message's (tenant, idempotency key) first click among `clicks`, ordered by tenant and key."""
    first: dict[tuple[str, str], ClickSeen] = {}
    for tenant, click in clicks:
        ref = (tenant, click.idempotency_key)
        first[ref] = first_click(first.get(ref), click)
    return [(tenant, first[(tenant, key)]) for tenant, key in sorted(first)]


def click_contributions(click: ClickSeen | None) -> dict[Cell, int]:
    """What a clicked message adds to the counts: one `clicked`, on its first click's day, for its flow."""
    if click is None:
        return {}
    return {(utc_day(click.at), click.flow, Metric.CLICKED): 1}


def click_delta(before: ClickSeen | None, after: ClickSeen | None) -> dict[Cell, int]:
    """The change in counts when a message's first click goes from `before` to `after` (zeros left out)."""
    out = dict(click_contributions(after))
    for cell, n in click_contributions(before).items():
        out[cell] = out.get(cell, 0) - n
    return {cell: n for cell, n in out.items() if n}
