"""`scrm dead-letters list|show|replay` against a fake reporting API that answers with reporting's own response
models: what is printed, what is asked, and the API's error body with a non-zero exit on failure."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from reporting.adapters.dead_letters_http import (
    DeadLetterDetail,
    DeadLetterPage,
    OriginalRecord,
    RecordHeader,
    ReplayPlace,
    ReplayResult,
)
from scrm_cli import dead_letters
from scrm_cli.client import ReportingClient
from scrm_cli.main import app

KEY = "scrm_test_key"
AT = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)


def letter(letter_id: int, *, replayed: bool = False) -> DeadLetterDetail:
    return DeadLetterDetail(
        id=letter_id, service="trigger-engine", failure="deterministic", error="DataError: invalid byte 0x00",
        tries=1, source_topic="scrm.events.v1", source_partition=3, source_offset=41 + letter_id,
        event_id=f"pay-{letter_id}", event_type="payment.succeeded", contact=f"cust-{letter_id}", dead_lettered_at=AT,
        replayed_at=AT if replayed else None, replay_count=1 if replayed else 0, tenant="demo",
        original=OriginalRecord(topic="scrm.events.v1", partition=3, offset=41 + letter_id, key=f"demo:cust-{letter_id}",
                                key_encoding="utf-8", headers=[RecordHeader(name="tenant", value="demo",
                                                                            encoding="utf-8")],
                                value={"event_id": f"pay-{letter_id}", "data": {"amount": "lots"}},
                                value_encoding="json"))


class FakeReporting:
    """Reporting's dead-letter routes over an in-memory list; records what it was asked."""

    def __init__(self) -> None:
        self.letters = {1: letter(1), 2: letter(2, replayed=True)}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return _error(401, "unauthorized", "unknown API key")
        path = request.url.path
        if request.method == "GET" and path == "/v1/dead-letters":
            page = DeadLetterPage(dead_letters=[self.letters[i] for i in sorted(self.letters, reverse=True)],
                                  next_cursor=None)
            return httpx.Response(200, json=page.model_dump(mode="json"))
        parts = path.strip("/").split("/")
        found = self.letters.get(int(parts[2])) if len(parts) >= 3 and parts[2].isdigit() else None
        if found is None:
            return _error(404, "not_found", f"no dead letter {parts[-1]}")
        if request.method == "GET":
            return httpx.Response(200, json=found.model_dump(mode="json"))
        if found.replayed_at is not None and request.url.params.get("force") != "true":
            return _error(409, "already_replayed", "replayed at 2026-11-30T09:30:00+00:00; pass force=true")
        done = found.model_copy(update={"replayed_at": AT, "replay_count": found.replay_count + 1})
        self.letters[found.id] = done
        result = ReplayResult(dead_letter=done, republished=ReplayPlace(topic="scrm.events.v1", partition=3, offset=99))
        return httpx.Response(200, json=result.model_dump(mode="json"))


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeReporting]:
    fake = FakeReporting()
    monkeypatch.setattr(dead_letters, "make_client",
                        lambda url, key: ReportingClient(url, key, transport=httpx.MockTransport(fake)))
    monkeypatch.delenv("SCRM_API_KEY", raising=False)
    monkeypatch.delenv("SCRM_REPORTING_URL", raising=False)
    yield fake


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, ["dead-letters", *args], env={"COLUMNS": "200", **(env or {})})


def test_list_shows_a_row_per_dead_letter_with_its_service_and_error(api: FakeReporting) -> None:
    result = run("list", "--api-key", KEY)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "pay-" in line]
    assert len(rows) == 2 and "pay-2" in rows[0] and "pay-1" in rows[1], result.stdout
    assert all("trigger-engine" in r and "DataError" in r for r in rows)
    assert str(api.requests[0].url) == "http://127.0.0.1:8084/v1/dead-letters?limit=50"


def test_list_passes_its_filters_and_reads_key_and_url_from_the_environment(api: FakeReporting) -> None:
    result = run("list", "--service", "trigger-engine", "--type", "payment.succeeded", "--not-replayed",
                 "--limit", "5", "--cursor", "17", env={"SCRM_API_KEY": KEY, "SCRM_REPORTING_URL": "http://r:1/"})
    assert result.exit_code == 0, result.output
    asked = api.requests[0]
    assert (asked.url.host, asked.url.port) == ("r", 1)
    assert dict(asked.url.params) == {"service": "trigger-engine", "type": "payment.succeeded", "replayed": "false",
                                      "limit": "5", "cursor": "17"}


def test_json_output_is_the_apis_answer(api: FakeReporting) -> None:
    listed = run("list", "--api-key", KEY, "--json")
    assert [d["id"] for d in json.loads(listed.stdout)["dead_letters"]] == [2, 1]
    shown = run("show", "1", "--api-key", KEY, "--json")
    assert json.loads(shown.stdout) == letter(1).model_dump(mode="json")


def test_show_prints_the_error_and_the_original_record(api: FakeReporting) -> None:
    result = run("show", "1", "--api-key", KEY)
    assert result.exit_code == 0, result.output
    for expected in ("trigger-engine", "deterministic", "DataError: invalid byte 0x00", "demo:cust-1",
                     "scrm.events.v1 partition 3 offset 42", "tenant: demo (utf-8)", '"amount": "lots"'):
        assert expected in result.stdout, (expected, result.stdout)


def test_replay_says_where_it_went_and_refuses_a_second_time_without_force(api: FakeReporting) -> None:
    first = run("replay", "1", "--api-key", KEY)
    assert first.exit_code == 0, first.output
    assert "replayed dead letter 1 to scrm.events.v1 (partition 3, offset 99); replayed 1 time(s)" in first.stdout
    again = run("replay", "1", "--api-key", KEY)
    assert again.exit_code == 1
    assert "HTTP 409 already_replayed: replayed at 2026-11-30T09:30:00+00:00; pass force=true" in again.stderr
    forced = run("replay", "1", "--api-key", KEY, "--force")
    assert forced.exit_code == 0 and "replayed 2 time(s)" in forced.stdout
    assert api.requests[-1].url.params["force"] == "true" and api.requests[-1].method == "POST"


@pytest.mark.parametrize(("args", "code", "message"), [
    (("show", "7", "--api-key", KEY), 1, "HTTP 404 not_found: no dead letter 7"),
    (("list", "--api-key", "wrong"), 1, "HTTP 401 unauthorized: unknown API key"),
    (("list",), 2, "no API key: pass --api-key or set SCRM_API_KEY"),
])
def test_failures_print_the_apis_error_and_exit_non_zero(api: FakeReporting, args: tuple[str, ...], code: int,
                                                         message: str) -> None:
    result = run(*args)
    assert result.exit_code == code
    assert message in result.stderr


def test_an_unreachable_api_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr(dead_letters, "make_client",
                        lambda url, key: ReportingClient(url, key, transport=httpx.MockTransport(refuse)))
    result = run("list", "--api-key", KEY, "--url", "http://127.0.0.1:1")
    assert result.exit_code == 1
    assert "unreachable: http://127.0.0.1:1 did not answer: connection refused" in result.stderr


def test_a_non_json_answer_is_reported_as_it_came(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dead_letters, "make_client", lambda url, key: ReportingClient(
        url, key, transport=httpx.MockTransport(lambda r: httpx.Response(502, text="Bad Gateway from proxy"))))
    result = run("list", "--api-key", KEY)
    assert result.exit_code == 1
    assert "HTTP 502 unexpected_answer: Bad Gateway from proxy" in result.stderr


def test_the_global_options_serve_dead_letters_too(api: FakeReporting) -> None:
    """`scrm --api-key … --reporting-url … --json dead-letters …` as for every other command."""
    result = CliRunner().invoke(app, ["--api-key", KEY, "--reporting-url", "http://reporting.test:9", "--json",
                                      "dead-letters", "show", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == letter(1).model_dump(mode="json")
    assert (api.requests[0].url.host, api.requests[0].url.port) == ("reporting.test", 9)
    # the command's own --url wins over the global one
    CliRunner().invoke(app, ["--api-key", KEY, "--reporting-url", "http://reporting.test:9", "dead-letters", "list",
                             "--url", "http://own.test:7"])
    assert api.requests[-1].url.host == "own.test"
