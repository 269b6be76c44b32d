"""The start banner names every port, the log folder, the key to export and the next commands; the runner's
own pid file and its last line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scrm_stack.cli import EXIT_FAILED, EXIT_INFRA, EXIT_OK, Runner, exit_meaning
from scrm_stack.stack import PORT_VARS, StackError

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
                            "SCRM_WHATSAPP_VERIFY_TOKEN": "t0ken", "SCRM_ADMIN_TOKEN": "scrmop_0p"}
    runner.banner()
    out = capsys.readouterr().out
    for name, port in PORTS.items():
        assert f"{name}" in out and f"http://127.0.0.1:{port}" in out
    for name in ("ingest", "trigger-engine", "sender", "segmenter", "reporting"):
        assert f"http://127.0.0.1:{PORTS[name]}/docs" in out
        assert f"http://127.0.0.1:{PORTS[name]}/redoc" in out
    assert f"kept in {tmp_path / 'secrets.json'}" in out
    assert f"kill -INT $(cat {tmp_path / 'run' / 'runner.pid'})" in out
    assert "127.0.0.1:19092" in out  # the broker
    assert "PostgreSQL" in out and "demo-shop" in out
    assert f"logs in {tmp_path / 'logs'}" in out
    assert "  export SCRM_API_KEY=scrm_k3y\n" in out
    assert f"curl -s -X POST http://127.0.0.1:{PORTS['ingest']}/v1/events" in out
    assert f"http://127.0.0.1:{PORTS['reporting']}/v1/reports/overview" in out
    assert "/v1/contacts/cust-42/decisions" in out
    assert "  export SCRM_ADMIN_TOKEN=scrmop_0p\n" in out
    # The ports differ from the CLI's defaults: the banner exports where each service is.
    exported = re.search(r"^scrm:   export (SCRM_INGEST_URL=.*)$", out, re.MULTILINE)
    assert exported, out
    assert dict(kv.split("=", 1) for kv in exported.group(1).split()) == {
        f"SCRM_{name.upper().replace('-', '_')}_URL": f"http://127.0.0.1:{PORTS[name]}"
        for name in ("ingest", "trigger-engine", "sender", "segmenter", "reporting")}
    for command in ("scrm tenants list", "scrm flows show order_confirmation", "scrm accounts list",
                    "scrm dead-letters list"):
        assert f"  .venv/bin/{command}" in out
    # The pasted payment carries tax and shipping, and the simulator is asked about its phone.
    payload = json.loads(re.search(r"-d '(\{.*\})'", out).group(1))  # type: ignore[union-attr]
    assert payload["data"]["tax"] > 0 and payload["data"]["shipping"] > 0
    phone = payload["contact"]["phone"].lstrip("+")
    assert f'curl -s "http://127.0.0.1:{PORTS["simulator"]}/_sim/messages?to={phone}"' in out
    runner.http.close()


def test_banner_leaves_out_the_simulator_check_when_an_outside_api_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SCRM_WHATSAPP_BASE_URL", "https://graph.example.test")
    runner = Runner(tmp_path, demo=False, plain=True)
    runner.stack.secrets = {"SCRM_BOOTSTRAP_API_KEY": "k", "SCRM_WHATSAPP_APP_SECRET": "s",
                            "SCRM_WHATSAPP_VERIFY_TOKEN": "t"}
    runner.banner()
    out = capsys.readouterr().out
    assert "/_sim/messages" not in out and "https://graph.example.test" in out
    assert "SCRM_ADMIN_TOKEN" not in out  # none given, none shown
    runner.http.close()


def test_runner_pid_file_is_written_refuses_a_second_runner_and_goes_with_its_runner(tmp_path: Path) -> None:
    runner = Runner(tmp_path, demo=False, plain=True)
    runner._write_own_pid()
    assert (tmp_path / "run" / "runner.pid").read_text() == f"{os.getpid()}\n"
    runner._refuse_second_runner()  # its own pid is no other runner
    # Not a service leftover: the leftover stop neither signals it nor reports it.
    assert runner.stack.stop_leftovers(timeout=1) == []
    runner._write_own_pid()
    runner._forget_own_pid()
    assert not (tmp_path / "run" / "runner.pid").exists()
    runner.http.close()


def test_a_live_runner_on_the_same_folder_refuses_the_start(tmp_path: Path) -> None:
    # A stand-in runner: a process whose command line names scrm_stack.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "scrm_stack.cli", "run"])
    try:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "runner.pid").write_text(f"{other.pid}\n")
        runner = Runner(tmp_path, demo=False, plain=True)
        cmdline = Path(f"/proc/{other.pid}/cmdline")
        deadline = time.monotonic() + 10
        while b"scrm_stack" not in cmdline.read_bytes():  # until it has exec'd, its command line is ours
            assert time.monotonic() < deadline, "the stand-in runner never started"
            time.sleep(0.01)
        with pytest.raises(StackError, match=f"another runner \\(pid {other.pid}\\)"):
            runner._refuse_second_runner()
        runner._forget_own_pid()  # not ours: stays
        assert (tmp_path / "run" / "runner.pid").exists()
        runner.http.close()
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize(("code", "started", "gone", "signals", "expected"), [
    (EXIT_OK, True, [], 1, "exit 0: drained completely"),
    (EXIT_INFRA, True, [], 0, "exit 2: the broker or PostgreSQL died"),
    (EXIT_FAILED, False, [], 0, "exit 1: could not start"),
    (EXIT_FAILED, True, ["sender"], 1, "exit 1: gave up restarting sender"),
    (EXIT_FAILED, True, [], 2, "exit 1: stopped at once on a second Ctrl-C"),
    (EXIT_FAILED, True, [], 1, "exit 1: stopped with work in flight"),
])
def test_exit_meaning_names_the_code_and_why(code: int, started: bool, gone: list[str], signals: int,
                                              expected: str) -> None:
    assert exit_meaning(code, started=started, gone=gone, signals=signals).startswith(expected)
