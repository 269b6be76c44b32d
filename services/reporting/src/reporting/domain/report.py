"""The overview report (R-R1): the date range it covers, counts per day and per flow, and rates."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from reporting.domain.messages import Metric
from reporting.domain.policy import ReportPolicy
from scrm_common.money import quantized


class BadRange(ValueError):
    """The requested date range cannot be reported."""


def report_range(start: date | None, end: date | None, today: date, policy: ReportPolicy) -> tuple[date, date]:
    """Inclusive UTC days: `to` defaults to today, `from` to the `default_days` ending at `to`."""
    end = end or today
    start = start or end - timedelta(days=policy.default_days - 1)
    if start > end:
        raise BadRange("'from' must not be after 'to'")
    if (end - start).days + 1 > policy.max_days:
        raise BadRange(f"a report spans at most {policy.max_days} days")
    return start, end


class Rates(BaseModel):
    """Ratios of counts; null when the denominator is zero.

    delivery_rate = delivered / sent (R-R1: healthy at 92–97 %) · read_rate = read / delivered ·
    reply_rate = replied / delivered · click_rate = clicked / delivered · failure_rate = failed / attempted.
    """

    delivery_rate: float | None = None
    read_rate: float | None = None
    reply_rate: float | None = None
    click_rate: float | None = None
    failure_rate: float | None = None


class Counts(BaseModel):
    """Counts of messages (attempted … failed; `clicked`: messages with a link followed, each once, on its first
    click's day, `reporting.domain.clicks`), distinct paid orders, and revenue per currency.

    Revenue amounts are exact decimals written as JSON strings in the currency's ISO 4217 minor units
    (`{"EUR": "99.50", "JPY": "12800", "KWD": "12.345"}`), never floats; currencies are not added up.
    """

    attempted: int = 0
    sent: int = 0
    delivered: int = 0
    read: int = 0
    replied: int = 0
    clicked: int = 0
    failed: int = 0
    purchased: int = 0
    revenue: dict[str, Decimal] = {}


class DayCounts(Counts):
    """One UTC day."""

    day: date


class FlowCounts(Counts):
    """One flow (trigger or campaign); null = not attributed to a flow."""

    flow: str | None
    rates: Rates


class TotalCounts(Counts):
    """The whole range."""

    rates: Rates


class Overview(BaseModel):
    """GET /v1/reports/overview."""

    model_config = ConfigDict(populate_by_name=True)

    tenant: str
    from_: date = Field(alias="from")
    to: date
    totals: TotalCounts
    days: list[DayCounts]
    flows: list[FlowCounts]


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def rates(c: dict[Metric, int]) -> Rates:
    """The rates of a set of counts."""
    delivered = c.get(Metric.DELIVERED, 0)
    return Rates(
        delivery_rate=_ratio(delivered, c.get(Metric.SENT, 0)),
        read_rate=_ratio(c.get(Metric.READ, 0), delivered),
        reply_rate=_ratio(c.get(Metric.REPLIED, 0), delivered),
        click_rate=_ratio(c.get(Metric.CLICKED, 0), delivered),
        failure_rate=_ratio(c.get(Metric.FAILED, 0), c.get(Metric.ATTEMPTED, 0)),
    )


class _Tally:
    def __init__(self) -> None:
        self.counts: dict[Metric, int] = {}
        self.revenue: dict[str, Decimal] = {}

    def fields(self) -> dict[str, object]:
        return {**{m.value: self.counts.get(m, 0) for m in Metric},
                "revenue": {cur: quantized(amount, cur) for cur, amount in sorted(self.revenue.items())}}


def build_overview(
    tenant: str, start: date, end: date,
    counts: Iterable[tuple[date, str | None, str, int]],
    revenue: Iterable[tuple[date, str | None, str, Decimal]],
) -> Overview:
    """Fold stored (day, flow, metric, value) and (day, flow, currency, amount) rows into the report."""
    total = _Tally()
    days = {start + timedelta(days=i): _Tally() for i in range((end - start).days + 1)}
    flows: dict[str | None, _Tally] = {}
    for day, flow, metric, value in counts:
        m = Metric(metric)
        for t in (total, days.setdefault(day, _Tally()), flows.setdefault(flow, _Tally())):
            t.counts[m] = t.counts.get(m, 0) + value
    for day, flow, currency, amount in revenue:
        for t in (total, days.setdefault(day, _Tally()), flows.setdefault(flow, _Tally())):
            t.revenue[currency] = t.revenue.get(currency, Decimal(0)) + amount
    return Overview(
        tenant=tenant, from_=start, to=end,
        totals=TotalCounts(**total.fields(), rates=rates(total.counts)),
        days=[DayCounts(day=day, **t.fields()) for day, t in sorted(days.items())
              if start <= day <= end],
        flows=[FlowCounts(flow=flow, **t.fields(), rates=rates(t.counts))
               for flow, t in sorted(flows.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
               if any(t.counts.values()) or t.revenue],
    )
