"""Issue 9: `make run` lets simulated customers click links (tests do not), and every process of one stack
shares one generated SCRM_LINK_SECRET."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from scrm_stack.stack import RUN_MODE_SIMULATOR_ENV, Stack, StackConfig, run_mode_sender_env
from sender.config import Settings as SenderSettings
from sender.domain.pacing import PacingPolicy, PacingState, allowance
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


def test_run_mode_registers_the_demo_number_60_days_back_so_its_marketing_flows(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_mode_sender_env(date(2026, 12, 1)) == {"SCRM_BOOTSTRAP_REGISTERED_AT": "2026-10-02"}
    env = _env(tmp_path)
    registered = date.fromisoformat(env["SCRM_BOOTSTRAP_REGISTERED_AT"])
    assert datetime.now(UTC).date() - registered == timedelta(days=60)
    monkeypatch.setenv("SCRM_BOOTSTRAP_REGISTERED_AT", env["SCRM_BOOTSTRAP_REGISTERED_AT"])
    now = datetime.now(UTC)
    at = SenderSettings().bootstrap_registered(now)
    assert at == datetime.combine(registered, datetime.min.time(), tzinfo=UTC)
    # Established: the new-number limit (under 50 a day) no longer holds; the hourly 200 does.
    idle = PacingState(next_marketing_at=None, utility_tokens=80.0, tokens_at=now)
    policy = PacingPolicy()
    assert allowance(policy, idle, now, registered_at=at, marketing_last_hour=0, marketing_last_day=49).marketing == 1
    assert allowance(policy, idle, now, registered_at=at, marketing_last_hour=200, marketing_last_day=0).marketing == 0
    assert allowance(policy, idle, now, registered_at=now, marketing_last_hour=0, marketing_last_day=49).marketing == 0


def test_test_stacks_and_the_operator_keep_their_registration_date(tmp_path: Path) -> None:
    assert "SCRM_BOOTSTRAP_REGISTERED_AT" not in _env(tmp_path / "t", SCRM_ENV="test")
    mine = _env(tmp_path / "o", SCRM_BOOTSTRAP_REGISTERED_AT="2026-11-30")
    assert mine["SCRM_BOOTSTRAP_REGISTERED_AT"] == "2026-11-30"
    assert _env(tmp_path / "e", SCRM_BOOTSTRAP_REGISTERED_AT="")["SCRM_BOOTSTRAP_REGISTERED_AT"] == ""  # "now"
