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
