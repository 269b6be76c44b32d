"""Ingest's settings: the operator token (SCRM_ADMIN_TOKEN) and the bootstrap tenant's id are checked at start."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ingest.config import Settings

PROD = {"env": "prod", "whatsapp_app_secret": "a-real-app-secret", "internal_token": "a-real-internal-token",
        "link_secret": "a-real-link-secret"}


def test_dev_has_a_default_operator_token() -> None:
    assert Settings().admin_token == "dev-admin-token"


def test_prod_starts_with_real_secrets() -> None:
    assert Settings(**PROD, admin_token="op-Zk2L9x").admin_token == "op-Zk2L9x"


@pytest.mark.parametrize(("overrides", "named"), [
    ({}, "SCRM_ADMIN_TOKEN"),  # the dev default
    ({"admin_token": ""}, "SCRM_ADMIN_TOKEN"),
    ({"admin_token": "  "}, "SCRM_ADMIN_TOKEN"),
    ({"admin_token": "changeme"}, "SCRM_ADMIN_TOKEN"),
    ({"admin_token": "dev-internal-token"}, "SCRM_ADMIN_TOKEN"),
    ({"admin_token": "op-Zk2L9x", "internal_token": "dev-internal-token"}, "SCRM_INTERNAL_TOKEN"),
    ({"admin_token": "op-Zk2L9x", "internal_token": ""}, "SCRM_INTERNAL_TOKEN"),
    ({"admin_token": "op-Zk2L9x", "link_secret": "dev-link-secret"}, "SCRM_LINK_SECRET"),
    ({"admin_token": "op-Zk2L9x", "link_secret": " "}, "SCRM_LINK_SECRET"),
])
def test_prod_refuses_a_missing_or_placeholder_token(overrides: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        Settings(**{**PROD, **overrides})


def test_an_empty_operator_token_is_refused_everywhere() -> None:
    with pytest.raises(ValidationError, match="SCRM_ADMIN_TOKEN must not be empty"):
        Settings(admin_token="")


@pytest.mark.parametrize("tenant", ["Demo", "-demo", "d", "demo shop", "demo_shop"])
def test_the_bootstrap_tenant_must_be_a_valid_tenant_id(tenant: str) -> None:
    with pytest.raises(ValidationError, match="SCRM_BOOTSTRAP_TENANT"):
        Settings(bootstrap_tenant=tenant)


def test_the_environment_sets_the_operator_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRM_ADMIN_TOKEN", "from-the-environment")
    assert Settings().admin_token == "from-the-environment"


@pytest.mark.parametrize("written", ["op-Zk2L9x\n", "  op-Zk2L9x\r\n", "op-Zk2L9x"])
def test_the_operator_token_from_a_file_loses_its_newline(written: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Kubernetes secret mounted as a file ends with a newline the operator never types."""
    monkeypatch.setenv("SCRM_ADMIN_TOKEN", written)
    assert Settings().admin_token == "op-Zk2L9x"


def test_a_refused_prod_config_shows_none_of_the_secrets_it_was_given() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(env="prod", whatsapp_app_secret="REAL-app-8d1", internal_token="REAL-internal-2f0",
                 link_secret="REAL-link-5a1", admin_token="changeme", bootstrap_api_key="scrm_REAL-boot-77c")
    assert "SCRM_ADMIN_TOKEN" in str(refused.value)
    assert "REAL-" not in str(refused.value)
