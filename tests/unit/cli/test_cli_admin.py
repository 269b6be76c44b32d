"""`scrm tenants|keys|accounts|templates|flows|settings` against a fake API (httpx MockTransport) answering in
the shapes of the HTTP contract: what each command asks (method, path, credential, body), what it prints, its
exit codes, --json, the API's errors, and that no token but a freshly issued key is ever printed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from scrm_cli import api as cli_api
from scrm_cli.main import app

API_KEY = "scrm_tenant_admin_key_do_not_print"
OPERATOR = "scrmop_operator_token_do_not_print"
ACCESS_TOKEN = "EAAG-access-token-do-not-print"
AT = "2026-11-30T09:30:00Z"
CLEAN_ENV = ("SCRM_API_KEY", "SCRM_ADMIN_TOKEN", "SCRM_INGEST_URL", "SCRM_TRIGGER_ENGINE_URL", "SCRM_SENDER_URL",
             "SCRM_SEGMENTER_URL", "SCRM_REPORTING_URL")

TENANT = {"tenant": "acme", "name": "ACME GmbH", "status": "active", "created_at": AT, "disabled_at": None}
ISSUED = {"id": "key_3fa9c1d2e4b5", "key": "scrm_freshly_issued_secret", "prefix": "scrm_fres", "role": "events",
          "label": "shop backend", "created_at": AT}
KEY_ROW = {"id": "key_3fa9c1d2e4b5", "prefix": "scrm_fres", "role": "events", "label": "shop backend",
           "created_at": AT, "last_used_at": None, "revoked_at": None, "bootstrap": False}
ACCOUNT = {"account_id": "100000000000002", "waba_id": "200000000000002", "display_name": "ACME",
           "throughput_per_second": 1000, "marketing_min_interval_s": 2.0, "marketing_max_interval_s": 5.0,
           "marketing_per_hour": 200, "new_account_per_day": 49, "new_account_days": 3, "registered_at": AT,
           "created_at": AT, "updated_at": AT, "restrictions": []}
FLOW = {"flow": "order_confirmation", "version": 3,
        "settings": {"enabled": True, "account_id": None, "templates": {"de": "order_confirmation"},
                     "delay_seconds": 0},
        "updated_at": AT, "updated_by": "key_3fa9c1d2e4b5"}


class FakeApi:
    """Answers registered per (method, path); records every request (with the port it went to)."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], httpx.Response] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, status: int = 200, body: Any = None) -> None:
        self.answers[(method, path)] = (httpx.Response(status) if body is None
                                        else httpx.Response(status, json=body))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        found = self.answers.get((request.method, request.url.path))
        if found is None:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such route in the fake"}})
        return found

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def last_body(self) -> Any:
        return json.loads(self.last.content)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    api = FakeApi()
    monkeypatch.setattr(cli_api, "TRANSPORT", httpx.MockTransport(api))
    for var in CLEAN_ENV:
        monkeypatch.delenv(var, raising=False)
    yield api


def scrm(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Any:
    """Run `scrm` with both credentials in the environment (unless `env` says otherwise)."""
    base = {"COLUMNS": "200", "SCRM_API_KEY": API_KEY, "SCRM_ADMIN_TOKEN": OPERATOR, "ACME_TOKEN": ACCESS_TOKEN}
    result = CliRunner().invoke(app, list(args), env={**base, **(env or {})}, input=stdin)
    for secret in (API_KEY, OPERATOR, ACCESS_TOKEN):  # never printed, whatever happened
        assert secret not in result.stdout and secret not in result.stderr, args
    return result


def bearer(request: httpx.Request) -> str:
    return request.headers["authorization"].removeprefix("Bearer ")


# ---------- tenants (operator) ----------

def test_tenants_create_posts_with_the_operator_token_and_shows_the_tenant(fake: FakeApi) -> None:
    fake.on("POST", "/v1/admin/tenants", 201, TENANT)
    result = scrm("tenants", "create", "acme", "--name", "ACME GmbH")
    assert result.exit_code == 0, result.output
    assert (fake.last.url.port, bearer(fake.last)) == (8080, OPERATOR)
    assert fake.last_body() == {"tenant": "acme", "name": "ACME GmbH"}
    assert "ACME GmbH" in result.stdout and "active" in result.stdout


@pytest.mark.parametrize(("command", "status"), [("disable", "disabled"), ("enable", "active")])
def test_tenants_disable_and_enable_patch_the_status(fake: FakeApi, command: str, status: str) -> None:
    fake.on("PATCH", "/v1/admin/tenants/acme", 200, {**TENANT, "status": status})
    result = scrm("tenants", command, "acme")
    assert result.exit_code == 0, result.output
    assert fake.last.method == "PATCH" and fake.last_body() == {"status": status}
    assert status in result.stdout


def test_tenants_list_is_a_table_and_json_is_the_apis_answer(fake: FakeApi) -> None:
    answer = {"tenants": [TENANT, {**TENANT, "tenant": "globex", "name": None, "status": "disabled",
                                   "disabled_at": AT}]}
    fake.on("GET", "/v1/admin/tenants", 200, answer)
    table = scrm("tenants", "list")
    rows = [line for line in table.stdout.splitlines() if "acme" in line or "globex" in line]
    assert len(rows) == 2 and "disabled" in rows[1] and "2026-11-30 09:30:00" in rows[1], table.stdout
    for args in (("--json", "tenants", "list"), ("tenants", "list", "--json")):  # global or per command
        assert json.loads(scrm(*args).stdout) == answer


def test_operator_commands_need_the_operator_token(fake: FakeApi) -> None:
    result = scrm("tenants", "list", env={"SCRM_ADMIN_TOKEN": ""})
    assert result.exit_code == 2
    assert "no operator token: pass --admin-token or set SCRM_ADMIN_TOKEN" in result.stderr
    assert fake.requests == []


# ---------- keys ----------

@pytest.mark.parametrize(("extra", "path", "token"), [
    ((), "/v1/keys", API_KEY),
    (("--tenant", "acme"), "/v1/admin/tenants/acme/keys", OPERATOR),
])
def test_keys_issue_uses_the_tenant_route_or_the_operator_route(fake: FakeApi, extra: tuple[str, ...], path: str,
                                                                token: str) -> None:
    fake.on("POST", path, 201, ISSUED)
    result = scrm("keys", "issue", "--role", "events", "--label", "shop backend", *extra)
    assert result.exit_code == 0, result.output
    assert (fake.last.url.path, bearer(fake.last)) == (path, token)
    assert fake.last_body() == {"role": "events", "label": "shop backend"}
    assert result.stdout.count(ISSUED["key"]) == 1  # the key, once, with a warning
    assert "shown once" in result.stderr


def test_keys_issue_json_carries_the_key_and_still_warns(fake: FakeApi) -> None:
    fake.on("POST", "/v1/keys", 201, ISSUED)
    result = scrm("keys", "issue", "--role", "read", "--json")
    assert json.loads(result.stdout) == ISSUED and "shown once" in result.stderr
    assert fake.last_body() == {"role": "read"}


def test_keys_list_and_revoke(fake: FakeApi) -> None:
    fake.on("GET", "/v1/admin/tenants/acme/keys", 200, {"keys": [KEY_ROW]})
    fake.on("DELETE", "/v1/admin/tenants/acme/keys/key_3fa9c1d2e4b5", 204)
    listed = scrm("keys", "list", "--tenant", "acme")
    assert listed.exit_code == 0 and "key_3fa9c1d2e4b5" in listed.stdout and "scrm_fres" in listed.stdout
    revoked = scrm("keys", "revoke", "key_3fa9c1d2e4b5", "--tenant", "acme")
    assert revoked.exit_code == 0, revoked.output
    assert fake.last.method == "DELETE" and bearer(fake.last) == OPERATOR
    assert "revoked key_3fa9c1d2e4b5" in revoked.stdout


@pytest.mark.parametrize("args", [("keys", "issue", "--role", "owner"), ("keys", "issue"),
                                  ("accounts", "add", "--phone-number-id", "1", "--waba-id", "2",
                                   "--token-env", "ACME_TOKEN", "--throughput", "50"),
                                  ("flows", "set", "order_confirmation", "enabled")])
def test_usage_errors_exit_2_and_ask_nothing(fake: FakeApi, args: tuple[str, ...]) -> None:
    result = scrm(*args)
    assert result.exit_code == 2, result.output
    assert fake.requests == []


# ---------- accounts ----------

def test_accounts_add_reads_the_token_from_an_environment_variable(fake: FakeApi) -> None:
    fake.on("POST", "/v1/accounts", 201, ACCOUNT)
    result = scrm("accounts", "add", "--phone-number-id", "100000000000002", "--waba-id", "200000000000002",
                  "--token-env", "ACME_TOKEN", "--display-name", "ACME", "--throughput", "1000",
                  "--marketing-per-hour", "200")
    assert result.exit_code == 0, result.output
    assert (fake.last.url.port, bearer(fake.last)) == (8082, API_KEY)
    assert fake.last_body() == {"account_id": "100000000000002", "waba_id": "200000000000002",
                                "access_token": ACCESS_TOKEN, "display_name": "ACME", "throughput_per_second": 1000,
                                "marketing_per_hour": 200}
    assert "100000000000002" in result.stdout and "1000 msg/s" in result.stdout


def test_accounts_add_asks_for_the_token_without_echoing_it(fake: FakeApi) -> None:
    fake.on("POST", "/v1/accounts", 201, ACCOUNT)
    result = scrm("accounts", "add", "--phone-number-id", "100000000000002", "--waba-id", "200000000000002",
                  stdin=ACCESS_TOKEN + "\n")
    assert result.exit_code == 0, result.output
    assert fake.last_body()["access_token"] == ACCESS_TOKEN  # and scrm() checked it was not printed


def test_accounts_add_refused_prints_the_code_the_message_and_each_field(fake: FakeApi) -> None:
    fake.on("POST", "/v1/accounts", 422, {
        "error": {"code": "validation_error", "message": "the request is not valid"},
        "errors": [{"index": None, "field": "body.access_token", "reason": "the Cloud API refused it (190)"},
                   {"index": None, "field": "body.marketing_per_hour", "reason": "above the tier's limit"}]})
    result = scrm("accounts", "add", "--phone-number-id", "1", "--waba-id", "2", "--token-env", "ACME_TOKEN")
    assert result.exit_code == 1
    assert "HTTP 422 validation_error: the request is not valid" in result.stderr
    assert "body.access_token: the Cloud API refused it (190)" in result.stderr
    assert "body.marketing_per_hour: above the tier's limit" in result.stderr


def test_accounts_update_sends_only_what_is_given_and_nothing_is_a_usage_error(fake: FakeApi) -> None:
    fake.on("PATCH", "/v1/accounts/100000000000002", 200, ACCOUNT)
    result = scrm("accounts", "update", "100000000000002", "--marketing-per-hour", "100")
    assert result.exit_code == 0, result.output
    assert fake.last_body() == {"marketing_per_hour": 100}
    nothing = scrm("accounts", "update", "100000000000002")
    assert nothing.exit_code == 2 and "nothing to change" in nothing.stderr
    unset = scrm("accounts", "update", "100000000000002", "--token-env", "NOT_SET_ANYWHERE")
    assert unset.exit_code == 2 and "NOT_SET_ANYWHERE" in unset.stderr


def test_accounts_list_show_and_remove(fake: FakeApi) -> None:
    fake.on("GET", "/v1/accounts", 200, {"tenant": "acme", "accounts": [ACCOUNT]})
    fake.on("GET", "/v1/accounts/100000000000002", 200, ACCOUNT)
    fake.on("DELETE", "/v1/accounts/100000000000002", 204)
    assert "200000000000002" in scrm("accounts", "list").stdout
    assert "< 49/day for 3 days" in scrm("accounts", "show", "100000000000002").stdout
    removed = scrm("accounts", "remove", "100000000000002", "--yes")
    assert removed.exit_code == 0 and fake.last.method == "DELETE"
    declined = scrm("accounts", "remove", "100000000000002", stdin="n\n")
    assert declined.exit_code == 1 and len([r for r in fake.requests if r.method == "DELETE"]) == 1


# ---------- templates ----------

def test_templates_sync_and_list_with_filters(fake: FakeApi) -> None:
    fake.on("POST", "/v1/templates/sync", 200, {"synced": 4, "accounts": [
        {"account_id": "100000000000002", "waba_id": "200000000000002", "templates": 4}]})
    synced = scrm("templates", "sync", "--account", "100000000000002")
    assert synced.exit_code == 0 and "synced 4 template(s)" in synced.stdout
    assert fake.last_body() == {"account_id": "100000000000002"}
    assert scrm("templates", "sync").exit_code == 0 and fake.last_body() == {}
    fake.on("GET", "/v1/templates", 200, {"tenant": "acme", "templates": [
        {"template_id": "t1", "account_id": "100000000000002", "waba_id": "200000000000002",
         "name": "order_confirmation", "language": "de", "category": "UTILITY", "status": "PAUSED",
         "quality": "RED", "components": [], "rejected_reason": None, "synced_at": AT, "updated_at": AT}]})
    listed = scrm("templates", "list", "--status", "PAUSED", "--language", "de")
    assert listed.exit_code == 0 and "order_confirmation" in listed.stdout and "PAUSED" in listed.stdout
    assert dict(fake.last.url.params) == {"status": "PAUSED", "language": "de"}


# ---------- flows and settings ----------

def test_flows_set_patches_nested_values_and_shows_the_result(fake: FakeApi) -> None:
    fake.on("PATCH", "/v1/flows/order_confirmation", 200, FLOW)
    result = scrm("flows", "set", "order_confirmation", "enabled=false", "templates.de=order_confirmation",
                  "delay_seconds=30", "account_id=null")
    assert result.exit_code == 0, result.output
    assert (fake.last.url.port, fake.last.method) == (8081, "PATCH")
    assert fake.last_body() == {"enabled": False, "templates": {"de": "order_confirmation"}, "delay_seconds": 30,
                                "account_id": None}
    assert "templates.de" in result.stdout and "version" in result.stdout


def test_flows_set_refused_shows_one_error_per_field(fake: FakeApi) -> None:
    fake.on("PATCH", "/v1/flows/order_confirmation", 422, {
        "error": {"code": "validation_error", "message": "the request is not valid"},
        "errors": [{"field": "body.delay_seconds", "reason": "must be at least 0"},
                   {"field": "body.colour", "reason": "unknown setting"}]})
    result = scrm("flows", "set", "order_confirmation", "delay_seconds=-1", "colour=red")
    assert result.exit_code == 1
    assert "body.delay_seconds: must be at least 0" in result.stderr and "body.colour: unknown setting" in result.stderr


def test_flows_replace_puts_the_file_and_takes_what_show_json_printed(fake: FakeApi, tmp_path: Path) -> None:
    fake.on("GET", "/v1/flows/order_confirmation", 200, FLOW)
    fake.on("PUT", "/v1/flows/order_confirmation", 200, FLOW)
    shown = scrm("flows", "show", "order_confirmation", "--json")
    path = tmp_path / "flow.json"
    path.write_text(shown.stdout)
    assert scrm("flows", "replace", "order_confirmation", "--file", str(path)).exit_code == 0
    assert fake.last.method == "PUT" and fake.last_body() == FLOW["settings"]
    path.write_text('{"enabled": false}')
    assert scrm("flows", "replace", "order_confirmation", "--file", str(path)).exit_code == 0
    assert fake.last_body() == {"enabled": False}
    path.write_text("[1]")
    bad = scrm("flows", "replace", "order_confirmation", "--file", str(path))
    assert bad.exit_code == 2 and "must be a JSON object" in bad.stderr
    missing = scrm("flows", "replace", "order_confirmation", "--file", str(tmp_path / "nope.json"))
    assert missing.exit_code == 2 and "nope.json" in missing.stderr
    path.write_text('{"enabled": true, "max_items": NaN}')
    sent = len(fake.requests)
    nan = scrm("flows", "replace", "order_confirmation", "--file", str(path))
    assert nan.exit_code == 2 and "not a finite number" in nan.stderr and "Traceback" not in nan.output
    assert len(fake.requests) == sent


def test_flows_list_and_history(fake: FakeApi) -> None:
    fake.on("GET", "/v1/flows", 200, {"tenant": "acme", "flows": [FLOW]})
    fake.on("GET", "/v1/flows/order_confirmation/history", 200, {"flow": "order_confirmation", "changes": [
        {"version": 2, "changed_at": AT, "changed_by": "key_3fa9c1d2e4b5",
         "old": {"enabled": True, "templates": {"de": "a"}}, "new": {"enabled": False, "templates": {"de": "a"}}}]})
    listed = scrm("flows", "list")
    assert listed.exit_code == 0 and "order_confirmation" in listed.stdout and "(default)" in listed.stdout
    history = scrm("flows", "history", "order_confirmation")
    assert history.exit_code == 0 and "enabled: true → false" in history.stdout
    assert "templates.de" not in history.stdout  # unchanged keys are not listed


def test_settings_show_and_set(fake: FakeApi) -> None:
    body = {"tenant": "acme", "time_zone": "Europe/Berlin",
            "business_hours": {"start": "09:00", "end": "18:00", "days": [1, 2, 3, 4, 5]}}
    fake.on("GET", "/v1/settings", 200, body)
    fake.on("PATCH", "/v1/settings", 200, body)
    shown = scrm("settings", "show")
    assert "business_hours.start" in shown.stdout and "Europe/Berlin" in shown.stdout
    assert scrm("settings", "set", "business_hours.start=08:00", "time_zone=Europe/Vienna").exit_code == 0
    assert fake.last_body() == {"business_hours": {"start": "08:00"}, "time_zone": "Europe/Vienna"}


# ---------- where and who ----------

def test_base_urls_and_key_come_from_flags_or_the_environment(fake: FakeApi) -> None:
    fake.on("GET", "/v1/accounts", 200, {"tenant": "acme", "accounts": []})
    from_env = scrm("accounts", "list", env={"SCRM_SENDER_URL": "http://sender.internal:9001/"})
    assert from_env.exit_code == 0 and "no accounts for tenant acme" in from_env.stdout
    assert (fake.last.url.host, fake.last.url.port) == ("sender.internal", 9001)
    flagged = scrm("--sender-url", "http://other:9002", "--api-key", "scrm_flag_key", "accounts", "list")
    assert flagged.exit_code == 0
    assert (fake.last.url.host, bearer(fake.last)) == ("other", "scrm_flag_key")


def test_tenant_commands_need_an_api_key(fake: FakeApi) -> None:
    result = scrm("flows", "list", env={"SCRM_API_KEY": ""})
    assert result.exit_code == 2 and "no API key: pass --api-key or set SCRM_API_KEY" in result.stderr


def test_an_unreachable_service_names_its_url_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr(cli_api, "TRANSPORT", httpx.MockTransport(refuse))
    result = scrm("--trigger-engine-url", "http://127.0.0.1:1", "flows", "show", "welcome")
    assert result.exit_code == 1
    assert "http://127.0.0.1:1 did not answer" in result.stderr
    assert "set SCRM_TRIGGER_ENGINE_URL or pass --trigger-engine-url" in result.stderr


def test_a_forbidden_role_is_the_apis_message(fake: FakeApi) -> None:
    fake.on("PATCH", "/v1/flows/welcome", 403, {"error": {
        "code": "forbidden", "message": "a key with role 'read' may not do this; it needs role 'admin'"}})
    result = scrm("flows", "set", "welcome", "enabled=false")
    assert result.exit_code == 1
    assert "HTTP 403 forbidden: a key with role 'read' may not do this; it needs role 'admin'" in result.stderr


# ---------- credentials and values no HTTP request can carry ----------

@pytest.mark.parametrize(("args", "env", "named"), [
    (("keys", "list"), {"SCRM_API_KEY": "scrm_schlüssel"}, "SCRM_API_KEY"),
    (("keys", "list"), {"SCRM_API_KEY": "scrm_two words"}, "SCRM_API_KEY"),
    (("keys", "list"), {"SCRM_API_KEY": "scrm_bell\x07"}, "SCRM_API_KEY"),
    (("tenants", "list"), {"SCRM_ADMIN_TOKEN": "öperator"}, "SCRM_ADMIN_TOKEN"),
    (("dead-letters", "list"), {"SCRM_API_KEY": "scrm_ключ"}, "SCRM_API_KEY"),
])
def test_a_key_a_header_cannot_carry_is_a_usage_error_naming_the_variable(
        fake: FakeApi, args: tuple[str, ...], env: dict[str, str], named: str) -> None:
    result = scrm(*args, env=env)
    assert result.exit_code == 2, result.output
    assert named in result.stderr and "Traceback" not in result.output
    assert fake.requests == []
    assert env[named] not in result.stderr  # the value itself is not echoed


def test_a_key_read_from_a_file_loses_its_newline(fake: FakeApi) -> None:
    fake.on("GET", "/v1/keys", 200, {"keys": [KEY_ROW]})
    result = scrm("keys", "list", env={"SCRM_API_KEY": API_KEY + "\n"})
    assert result.exit_code == 0, result.output
    assert bearer(fake.last) == API_KEY


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "[1, NaN]", '{"a": Infinity}'])
def test_a_number_json_cannot_carry_is_a_usage_error(fake: FakeApi, value: str) -> None:
    result = scrm("flows", "set", "order_confirmation", f"max_items={value}")
    assert result.exit_code == 2, result.output
    assert "max_items" in result.stderr and "not a finite number" in result.stderr
    assert fake.requests == []


def test_a_piped_table_keeps_each_row_on_one_line(fake: FakeApi) -> None:
    """Captured or piped output is no 80-column terminal: a key's id, prefix and label stay on their row."""
    row = {**KEY_ROW, "label": "the shop backend in the Frankfurt data centre, second rack", "last_used_at": AT,
           "revoked_at": AT}
    fake.on("GET", "/v1/admin/tenants/acme/keys", 200, {"keys": [row]})
    listed = scrm("keys", "list", "--tenant", "acme", env={"COLUMNS": "80"})
    assert listed.exit_code == 0, listed.output
    line = next(line for line in listed.stdout.splitlines() if "key_3fa9c1d2e4b5" in line)
    assert row["label"] in line and row["prefix"] in line
