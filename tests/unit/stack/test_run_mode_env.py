"""Issue 9: `make run` lets simulated customers click links (tests do not), and every process of one stack
shares one generated SCRM_LINK_SECRET."""

from __future__ import annotations

from pathlib import Path

import pytest

from scrm_stack.stack import RUN_MODE_SIMULATOR_ENV, Stack, StackConfig
from whatsapp_sim.config import SimulatorSettings


def _env(tmp_path: Path, **env: str) -> dict[str, str]:
    stack = Stack(StackConfig.from_env(tmp_path, env=env))
    stack.load_secrets()
    return stack.service_env()


def test_run_mode_clicks_some_links_and_the_simulator_reads_the_values(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(tmp_path)
    assert env["SCRM_SIMULATOR_CLICK_RATE"] == "0.3"
    for var in RUN_MODE_SIMULATOR_ENV:
        monkeypatch.setenv(var, env[var])
    settings = SimulatorSettings()
    assert settings.simulator_click_rate == 0.3 and settings.simulator_click_delay_s == (3.0, 30.0)


def test_test_stacks_never_click_and_the_operator_value_wins(tmp_path: Path) -> None:
    assert "SCRM_SIMULATOR_CLICK_RATE" not in _env(tmp_path / "t", SCRM_ENV="test")
    assert _env(tmp_path / "o", SCRM_SIMULATOR_CLICK_RATE="0")["SCRM_SIMULATOR_CLICK_RATE"] == "0"


def test_one_link_secret_per_stack_kept_across_restarts_and_overridable(tmp_path: Path) -> None:
    first = _env(tmp_path)["SCRM_LINK_SECRET"]
    assert len(first) >= 32 and first != "dev-link-secret"
    assert _env(tmp_path)["SCRM_LINK_SECRET"] == first  # kept in secrets.json
    assert _env(tmp_path, SCRM_LINK_SECRET="mine-0123456789")["SCRM_LINK_SECRET"] == "mine-0123456789"
