"""The result document's shape, and merging runs of one day."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from scrm_bench import results
from scrm_bench.main import parse_args


def test_a_new_document_records_machine_and_kafka_client() -> None:
    doc = results.new_document(date(2026, 11, 22), argv=["--only", "c"])
    assert doc["date"] == "2026-11-22" and doc["schema"] == results.SCHEMA_VERSION
    assert doc["machine"]["cpu_count"] >= 1 and doc["machine"]["python"].count(".") == 2
    kafka = doc["kafka_client"]
    assert set(kafka) >= {"aiokafka", "NO_EXTENSIONS", "c_extension_loaded", "crecords_importable"}
    assert kafka["c_extension_loaded"] == (not kafka["NO_EXTENSIONS"] and kafka["crecords_importable"])
    assert doc["argv"] == ["--only", "c"] and doc["figures"] == {}
    json.dumps(doc)


def test_figures_carry_target_and_verdict() -> None:
    f = results.figure("pipeline", {"latency_s": {"p99": 0.4}}, target="p99 ≤ 1 s", met=True)
    assert f["target"] == "p99 ≤ 1 s" and f["target_met"] is True and f["latency_s"]["p99"] == 0.4
    assert "measured_at" in f
    with pytest.raises(ValueError):
        results.figure("other", {}, target="-", met=None)


def test_writing_merges_the_figures_of_one_day(tmp_path: Path) -> None:
    first = results.new_document(date(2026, 11, 22), argv=[])
    first["figures"]["floor"] = results.figure("floor", {"msgs_per_s": 1.0}, target="-", met=None)
    first["figures"]["pipeline"] = results.figure("pipeline", {"rate": 300}, target="-", met=False)
    path = results.write(first, tmp_path)
    assert path == tmp_path / "2026-11-22.json"
    second = results.new_document(date(2026, 11, 22), argv=["--only", "c"])
    second["figures"]["pipeline"] = results.figure("pipeline", {"rate": 400}, target="-", met=True)
    results.write(second, tmp_path)
    doc = json.loads(path.read_text())
    assert doc["figures"]["floor"]["msgs_per_s"] == 1.0
    assert doc["figures"]["pipeline"]["rate"] == 400 and doc["argv"] == ["--only", "c"]
    other_day = results.new_document(date(2026, 11, 23), argv=[])
    assert results.write(other_day, tmp_path).name == "2026-11-23.json"


def test_results_dir_is_found_upwards(tmp_path: Path) -> None:
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert results.results_dir(tmp_path / "a" / "b") == tmp_path / "bench" / "results"


def test_cli_defaults_match_the_targets() -> None:
    args = parse_args([])
    assert args.rate == 300 and args.duration == 60 and args.only is None
    assert args.floor_messages == 50_000 and args.events == 20_000
    assert parse_args(["--only", "c", "--duration", "20"]).only == ["c"]
    with pytest.raises(SystemExit):
        parse_args(["--rate", "0"])


def test_figure_d_is_ten_thousand_carts_within_thirty_seconds() -> None:
    from scrm_bench.carts import DEFAULT_CARTS, TARGET_SECONDS, target_met

    assert (DEFAULT_CARTS, TARGET_SECONDS) == (10_000, 30.0)  # issue 9: (d)
    args = parse_args(["--only", "d"])
    assert args.only == ["d"] and args.carts == 10_000
    assert parse_args(["--only", "d", "--carts", "500"]).carts == 500
    assert args.cart_runs == 3 and parse_args(["--cart-runs", "1"]).cart_runs == 1
    for bad in (["--carts", "0"], ["--cart-runs", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
    assert target_met({"complete": True, "seconds": 29.9})
    assert target_met({"complete": True, "seconds": 30.0})
    assert not target_met({"complete": True, "seconds": 30.1})
    assert not target_met({"complete": False, "seconds": 5.0})  # not every stage-1 command came


def test_figure_d_reports_the_median_run_and_every_runs_seconds() -> None:
    from scrm_bench.carts import median_run

    runs = [{"seconds": 35.4, "complete": True}, {"seconds": 28.9, "complete": True},
            {"seconds": 31.0, "complete": True}]
    assert median_run(runs) == {"seconds": 31.0, "complete": True, "runs": 3, "runs_seconds": [35.4, 28.9, 31.0]}
    # an incomplete run is the slowest, whatever its seconds say
    with_timeout = [{"seconds": 5.0, "complete": False}, *runs[:2]]
    assert median_run(with_timeout)["seconds"] == 35.4
    assert median_run(with_timeout)["runs_seconds"] == [None, 35.4, 28.9]
    assert median_run(runs[:2])["seconds"] == 28.9  # even count: the lower middle


def test_figure_d_is_written_with_the_others_and_rendered(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from scrm_bench.main import render

    doc = results.new_document(date(2026, 12, 1), argv=["--only", "d"])
    doc["figures"]["carts"] = results.figure(
        "carts", {"carts": 10_000, "stage_1_commands": 10_000, "complete": True, "seconds": 12.5,
                  "carts_per_s": 800.0, "runs": 3, "runs_seconds": [12.5, 11.0, 14.0], "decisions": {"scheduled": 30_000.0, "send": 10_000.0}, "cpu": {}},
        target="10,000 carts: every stage-1 command relayed ≤ 30 s", met=True)
    path = results.write(doc, tmp_path)
    written = json.loads(path.read_text())["figures"]["carts"]
    assert written["seconds"] == 12.5 and written["target_met"] is True
    out = io.StringIO()
    render(json.loads(path.read_text()), Console(file=out, width=250))
    text = out.getvalue()
    assert "(d) abandoned carts" in text and "12.5 s (800.0 carts/s)" in text and "10000/10000" in text, text
    assert "median of 3 runs: 12.5, 11.0, 14.0 s" in text, text


def test_the_carts_of_figure_d_are_valid_events_with_stage_1_due() -> None:
    import time as clock

    from scrm_bench.carts import CART_AGE, cart, encoded, opted_in, stage_one_key
    from scrm_common.contracts.events import parse_event

    now = clock.time()
    event = parse_event(cart("RUN", 7, now - CART_AGE.total_seconds()))
    assert event.type == "cart.updated" and event.data.checkout_url and event.data.items  # type: ignore[union-attr]
    assert CART_AGE.total_seconds() > 35 * 60  # R-T6.1: stage 1 at 30 ± 5 min, so every cart is due at once
    person = parse_event(opted_in("RUN", 7, now))
    assert person.type == "contact.updated" and person.data.opted_in is True  # type: ignore[union-attr]
    assert person.contact == event.contact
    assert stage_one_key("RUN", 7) == "bench|abandoned_cart|bc-RUN-7|1"
    assert len(encoded([cart("RUN", i, now) for i in range(4)])) == 4


def test_cpu_delta_names_what_else_ran_on_the_machine() -> None:
    from scrm_bench.infra import MACHINE, OTHERS, cpu_delta

    before = {"sender": 1.0, "ingest": 2.0, MACHINE: 100.0}
    after = {"sender": 3.0, "ingest": 3.0, MACHINE: 110.0}
    delta = cpu_delta(before, after, 10.0)
    assert delta["sender"] == {"cpu_seconds": 2.0, "cores": 0.2}
    assert delta[OTHERS]["cpu_seconds"] == 7.0 and delta[MACHINE]["cores"] == 1.0
    assert list(delta)[:2] == ["sender", "ingest"]


def test_hot_frames_of_collapsed_stacks() -> None:
    from scrm_bench.profile import hot_frames

    collapsed = ("main (m.py:1);run (asyncio/runners.py:1);EpollSelector.select (selectors.py:468) 50\n"
                 "main (m.py:1);handle (h.py:3);validate (p.py:9) 30\n"
                 "main (m.py:1);handle (h.py:3);post (httpx/_client.py:1) 20\n")
    hot = hot_frames(collapsed, top=2)
    assert hot["samples"] == 100 and hot["busy_share"] == 0.5
    assert hot["own"] == [("validate (p.py:9)", 0.6), ("post (httpx/_client.py:1)", 0.4)]
    assert ("handle (h.py:3)", 1.0) in hot["inclusive"]
