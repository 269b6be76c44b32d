"""A refused configuration names the setting at fault, never a value it was given (secrets included), in every
service; tokens read from a file lose their trailing newline."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from ingest.config import Settings as IngestSettings
from reporting.config import Settings as ReportingSettings
from scrm_common.settings import CommonSettings
from segmenter.config import Settings as SegmenterSettings
from sender.config import Settings as SenderSettings
from trigger_engine.config import Settings as EngineSettings

SERVICES: list[type[BaseSettings]] = [CommonSettings, IngestSettings, EngineSettings, SegmenterSettings,
                                      SenderSettings, ReportingSettings]
# Secrets every service may read, each with a value no message should ever show.
SECRETS = {"SCRM_ADMIN_TOKEN": "REAL-ADMIN-d41f", "SCRM_WHATSAPP_APP_SECRET": "REAL-APP-9c2e",
           "SCRM_WHATSAPP_VERIFY_TOKEN": "REAL-VERIFY-77a0", "SCRM_BOOTSTRAP_API_KEY": "scrm_REAL-BOOT-5b1d",
           "SCRM_BOOTSTRAP_ACCESS_TOKEN": "REAL-ACCESS-0e8f"}


@pytest.mark.parametrize("kind", SERVICES, ids=lambda k: k.__module__)
def test_a_refused_prod_config_names_the_setting_but_no_value(kind: type[BaseSettings],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SCRM_ENV", "prod")
    monkeypatch.setenv("SCRM_INTERNAL_TOKEN", "dev-internal-token")  # the dev default: refused in prod
    with pytest.raises(ValidationError) as refused:
        kind()
    text = str(refused.value)
    assert "SCRM_INTERNAL_TOKEN" in text
    assert [s for s in SECRETS.values() if s in text] == []
    assert "input_value" not in text


@pytest.mark.parametrize("kind", SERVICES, ids=lambda k: k.__module__)
def test_a_field_refused_by_its_type_shows_no_value_either(kind: type[BaseSettings],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRM_KEY_CACHE_SECONDS", "REAL-NOT-A-NUMBER-3a9c")
    with pytest.raises(ValidationError) as refused:
        kind()
    assert "key_cache_seconds" in str(refused.value)
    assert "REAL-NOT-A-NUMBER" not in str(refused.value)


def test_the_internal_token_from_a_file_loses_its_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRM_INTERNAL_TOKEN", "s3cret-internal\n")
    assert CommonSettings().internal_token == "s3cret-internal"
