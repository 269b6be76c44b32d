"""Percentile and histogram math of the benchmark."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scrm_bench.stats import (
    bucket_delta,
    counter_value,
    histogram_buckets,
    histogram_quantile,
    histogram_summary,
    percentile,
    summarize,
)


def test_nearest_rank_percentiles_of_one_to_a_thousand() -> None:
    data = [float(i) for i in range(1, 1001)]
    assert percentile(data, 50) == 500
    assert percentile(data, 90) == 900
    assert percentile(data, 99) == 990
    assert percentile(data, 99.9) == 999
    assert percentile(data, 100) == 1000
    assert percentile(data, 0) == 1


def test_percentiles_of_small_samples_are_actual_values() -> None:
    assert percentile([0.2], 99.9) == 0.2
    assert percentile([1.0, 2.0], 50) == 1.0
    assert percentile([1.0, 2.0], 51) == 2.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=500),
       st.floats(min_value=0, max_value=100))
def test_at_least_q_percent_are_at_or_below_the_percentile(values: list[float], q: float) -> None:
    data = sorted(values)
    p = percentile(data, q)
    assert p in data
    assert sum(1 for v in data if v <= p) >= q / 100 * len(data) - 1e-9
    # and it is the smallest such value
    smaller = [v for v in data if v < p]
    assert len(smaller) < max(1, math.ceil(round(q / 100 * len(data), 9)))


def test_summary_has_every_percentile_in_order() -> None:
    s = summarize([0.3, 0.1, 0.2, 0.5, 0.4])
    assert s["count"] == 5 and s["min"] == 0.1 and s["max"] == 0.5
    assert s["p50"] == 0.3 and s["mean"] == pytest.approx(0.3)
    assert s["p50"] <= s["p90"] <= s["p99"] <= s["p99.9"] <= s["max"]
    empty = summarize([])
    assert empty["count"] == 0 and empty["p99"] is None


METRICS = """\
# HELP scrm_sender_event_to_provider_seconds From the event's ingest to the provider accepting the message
# TYPE scrm_sender_event_to_provider_seconds histogram
scrm_sender_event_to_provider_seconds_bucket{category="utility",le="0.1"} 10.0
scrm_sender_event_to_provider_seconds_bucket{category="utility",le="0.5"} 90.0
scrm_sender_event_to_provider_seconds_bucket{category="utility",le="1.0"} 100.0
scrm_sender_event_to_provider_seconds_bucket{category="utility",le="+Inf"} 100.0
scrm_sender_event_to_provider_seconds_bucket{category="marketing",le="0.1"} 0.0
scrm_sender_event_to_provider_seconds_bucket{category="marketing",le="0.5"} 0.0
scrm_sender_event_to_provider_seconds_bucket{category="marketing",le="1.0"} 0.0
scrm_sender_event_to_provider_seconds_bucket{category="marketing",le="+Inf"} 0.0
scrm_sender_event_to_provider_seconds_count{category="utility"} 100.0
scrm_trigger_engine_outbox_relayed_total 1234.0
scrm_trigger_engine_decisions_total{flow="order_confirmation",outcome="send"} 7.0
scrm_trigger_engine_decisions_total{flow="welcome",outcome="send"} 3.0
"""


def test_histogram_buckets_are_summed_over_labels() -> None:
    buckets = histogram_buckets(METRICS, "scrm_sender_event_to_provider_seconds")
    assert buckets == {0.1: 10.0, 0.5: 90.0, 1.0: 100.0, math.inf: 100.0}
    assert histogram_buckets(METRICS, "nope") == {}


def test_counters_fold_their_labels() -> None:
    assert counter_value(METRICS, "scrm_trigger_engine_outbox_relayed_total") == 1234
    assert counter_value(METRICS, "scrm_trigger_engine_decisions_total") == 10
    assert counter_value("", "x") == 0


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = {0.1: 10.0, 0.5: 90.0, 1.0: 100.0, math.inf: 100.0}
    assert histogram_quantile(buckets, 0.05) == pytest.approx(0.05)
    assert histogram_quantile(buckets, 0.5) == pytest.approx(0.1 + 0.4 * 40 / 80)
    assert histogram_quantile(buckets, 0.95) == pytest.approx(0.5 + 0.5 * 5 / 10)
    assert histogram_quantile({0.1: 0.0, math.inf: 0.0}, 0.5) is None
    assert histogram_quantile({0.1: 1.0, math.inf: 10.0}, 0.99) == 0.1  # beyond the last finite bound


def test_bucket_delta_is_what_happened_between_scrapes() -> None:
    before = {0.1: 5.0, 1.0: 8.0, math.inf: 8.0}
    after = {0.1: 15.0, 1.0: 108.0, math.inf: 110.0}
    delta = bucket_delta(before, after)
    assert delta == {0.1: 10.0, 1.0: 100.0, math.inf: 102.0}
    summary = histogram_summary(delta)
    assert summary["count"] == 102.0 and summary["p50"] is not None
