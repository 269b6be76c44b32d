"""Simulator settings and the template catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from whatsapp_sim.config import SimulatorSettings
from whatsapp_sim.domain.templates import TemplateCatalog, parse_template, render
from whatsapp_sim.simulator import load_catalog


def test_defaults() -> None:
    settings = SimulatorSettings()
    assert settings.simulator_port == 8089
    assert settings.simulator_status_delay_ms == (50, 300)
    accounts = settings.accounts()
    # three numbers, each of its own WABA, so two tenants can each have one (issue 7)
    assert {k: (a.token, a.display_phone_number, a.waba_id) for k, a in accounts.items()} == {
        "100000000000001": ("sim-token", "15550001111", "200000000000001"),
        "100000000000002": ("sim-token-2", "15550002222", "200000000000002"),
        "100000000000003": ("sim-token-3", "15550003333", "200000000000003"),
    }
    assert next(iter(accounts)) == "100000000000001"  # the default number comes first


def test_the_bootstrap_number_and_its_token_come_from_the_bootstrap_settings() -> None:
    accounts = SimulatorSettings(bootstrap_phone_number_id="100000000000002", bootstrap_access_token="own",
                                 simulator_waba_id="299").accounts()
    assert {k: (a.token, a.waba_id) for k, a in accounts.items()} == {
        "100000000000002": ("own", "299"), "100000000000003": ("sim-token-3", "200000000000003")}


def test_default_catalog_is_the_senders() -> None:
    catalog = load_catalog(SimulatorSettings())
    template = catalog.get("order_confirmation", "en_US")
    assert template is not None and template.status == "APPROVED" and len(template.body_params) == 8
    assert catalog.get("welcome", "de") is not None


def test_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps([{"name": "x", "language": "en", "category": "utility", "status": "PAUSED",
                                 "body": "{{1}}"}]))
    monkeypatch.setenv("SCRM_SIMULATOR_ACCOUNTS", "111:tok-a, 222:tok-b:4930123456, 333:tok-c:4930999:waba-3")
    monkeypatch.setenv("SCRM_SIMULATOR_STATUS_DELAY_MS", "10..20")
    monkeypatch.setenv("SCRM_SIMULATOR_TEMPLATES", str(path))
    monkeypatch.setenv("SCRM_SIMULATOR_SEED", "3")
    monkeypatch.setenv("SCRM_SIMULATOR_WINDOW_MODE", "async")
    settings = SimulatorSettings()
    accounts = settings.accounts()
    assert {k: (a.token, a.display_phone_number, a.waba_id) for k, a in accounts.items()} == {
        "111": ("tok-a", "15550001111", "200000000000001"), "222": ("tok-b", "4930123456", "200000000000001"),
        "333": ("tok-c", "4930999", "waba-3")}
    assert settings.simulator_status_delay_ms == (10, 20)
    assert (settings.simulator_seed, settings.simulator_window_mode) == (3, "async")
    template = load_catalog(settings).get("x", "en")
    assert template is not None and template.status == "PAUSED"


@pytest.mark.parametrize("env", [
    {"simulator_accounts": "only-an-id"}, {"simulator_accounts": "1:t:d:w:extra"}, {"simulator_accounts": "1:t::w"},
    {"simulator_status_delay_ms": "300..50"},
    {"simulator_window_mode": "later"}, {"simulator_p_fail": 1.5}])
def test_bad_settings_fail_at_start(env: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SimulatorSettings(**env)  # type: ignore[arg-type]


def test_catalog_parsing_and_rendering() -> None:
    named = parse_template({"name": "n", "language": "en", "body": "Hi {{name}}, {{ name }} again, {{code}}"})
    assert (named.parameter_format, named.body_params) == ("NAMED", ("name", "code"))
    positional = parse_template({"name": "p", "language": "en", "body": "{{2}} then {{1}}"})
    assert positional.body_params == ("1", "2")
    assert render(positional.body, {"1": "a", "2": "b"}) == "b then a"
    for bad in ({"name": "m", "language": "en", "body": "{{1}} {{x}}"},
                {"name": "g", "language": "en", "body": "{{1}} {{3}}"},
                {"name": "s", "language": "en", "body": "x", "status": "LIVE"},
                {"language": "en", "body": "x"}):
        with pytest.raises(ValueError):
            parse_template(bad)
    with pytest.raises(ValueError):
        TemplateCatalog.from_json('{"name": "x"}')
