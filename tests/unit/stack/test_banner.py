"""The start banner names every port, the log folder, the key to export and the next commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from scrm_stack.cli import Runner
from scrm_stack.stack import PORT_VARS

PORTS = {"ingest": 18080, "trigger-engine": 18081, "sender": 18082, "segmenter": 18083, "reporting": 18084,
         "simulator": 18089}


def test_banner_lists_ports_logs_key_and_next_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    for name, (var, _) in PORT_VARS.items():
        monkeypatch.setenv(var, str(PORTS[name]))
    monkeypatch.setenv("SCRM_BROKER_PORT", "19092")
    monkeypatch.delenv("SCRM_WHATSAPP_BASE_URL", raising=False)
    monkeypatch.delenv("SCRM_KAFKA_BOOTSTRAP", raising=False)
    runner = Runner(tmp_path, demo=True, plain=True)
    runner.stack.secrets = {"SCRM_BOOTSTRAP_API_KEY": "scrm_k3y", "SCRM_WHATSAPP_APP_SECRET": "s3cret",
                            "SCRM_WHATSAPP_VERIFY_TOKEN": "t0ken"}
    runner.banner()
    out = capsys.readouterr().out
    for name, port in PORTS.items():
        assert f"{name}" in out and f"http://127.0.0.1:{port}" in out
    for name in ("ingest", "trigger-engine", "sender", "segmenter", "reporting"):
        assert f"http://127.0.0.1:{PORTS[name]}/docs" in out
    assert "127.0.0.1:19092" in out  # the broker
    assert "PostgreSQL" in out and "demo-shop" in out
    assert f"logs in {tmp_path / 'logs'}" in out
    assert "  export SCRM_API_KEY=scrm_k3y\n" in out
    assert f"curl -s -X POST http://127.0.0.1:{PORTS['ingest']}/v1/events" in out
    assert f"http://127.0.0.1:{PORTS['reporting']}/v1/reports/overview" in out
    assert "/v1/contacts/cust-42/decisions" in out
    assert f"scrm dead-letters list --url http://127.0.0.1:{PORTS['reporting']}" in out
    runner.http.close()
