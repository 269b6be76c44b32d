"""Every error answer of every route of every service is the documented JSON body (CONTRACT §2) with a status
its OpenAPI documents: the test walks each service's /openapi.json and provokes the errors of each route —
no key, a path holding a control character, garbage in typed parameters and bodies, unknown ids, a method
the path does not have."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from scrm_stack.stack import SERVICES
from tests.support.stack import TestStack

JSON_BODY = b"\x00 not JSON"


def _assert_error_body(resp: httpx.Response, what: str) -> dict[str, Any]:
    assert resp.headers.get("content-type") == "application/json", (what, resp.status_code, resp.text[:300])
    body = resp.json()
    assert set(body) <= {"error", "errors"}, (what, body)
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"] and isinstance(error["message"], str) and error["message"]
    assert set(error) <= {"code", "message", "correlation_id"}, (what, body)
    if resp.status_code >= 500:
        assert error["correlation_id"] == resp.headers["x-correlation-id"], (what, body)
    for fault in body.get("errors", []):
        assert set(fault) == {"index", "field", "reason"} and fault["field"] and fault["reason"], (what, body)
    return body


def _path(template: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, template)


Case = tuple[str, str, str, str, dict[str, Any]]  # what, method, path template, path, request kwargs


def _provocations(spec: dict[str, Any], api_key: str) -> list[Case]:
    """A request for every error the OpenAPI's routes can be made to answer."""
    auth = {"Authorization": f"Bearer {api_key}"}
    cases: list[Case] = []
    for template, operations in spec["paths"].items():
        for method, operation in operations.items():
            params = operation.get("parameters", [])
            path_params = [p for p in params if p["in"] == "path"]
            numeric_path = any(p["schema"].get("type") == "integer" for p in path_params)
            body = {"content": JSON_BODY, "headers": auth | {"Content-Type": "application/json"}} \
                if "requestBody" in operation else {"headers": auth}
            unknown = _path(template, "999999999" if numeric_path else "no-such-thing-e2e")
            requests: list[tuple[str, str, dict[str, Any]]] = []
            if operation.get("security"):
                requests += [("no key", unknown, {}),
                             ("an unknown key", unknown, {"headers": {"Authorization": "Bearer nope"}})]
            if path_params:
                requests += [("a NUL in the path", _path(template, "a%00b"), body),
                             ("a control character in the path", _path(template, "%1B%5B31m"), body),
                             ("an unknown id", unknown, body)]
                if numeric_path:
                    requests.append(("garbage for a number in the path", _path(template, "garbage"), body))
            for param in (p for p in params if p["in"] == "query"):
                name, schema = param["name"], param["schema"]
                requests.append((f"a NUL in query.{name}", unknown, body | {"params": {name: "x\x00y"}}))
                kinds = {(s.get("type"), s.get("format")) for s in [schema, *schema.get("anyOf", [])]}
                if any(t in ("integer", "boolean", "number") or f in ("date", "date-time") for t, f in kinds):
                    requests.append((f"garbage in query.{name}", unknown, body | {"params": {name: "garbage"}}))
            if "requestBody" in operation and not path_params:
                requests.append(("a body that is not JSON", unknown, body))
            cases += [(what, method, template, path, kwargs) for what, path, kwargs in requests]
        wrong = next(m for m in ("get", "post", "put", "delete", "patch") if m not in operations)
        cases.append((f"{wrong.upper()} on a path without it", wrong, template, _path(template, "x"), {"headers": auth}))
    return cases


@pytest.mark.parametrize("service", SERVICES)
def test_every_error_of_every_route_is_the_documented_body(full_stack: TestStack, service: str) -> None:
    spec = full_stack.http.get(full_stack.url(service, "/openapi.json")).json()
    cases = _provocations(spec, full_stack.api_key)
    assert cases
    answered: dict[str, int] = {}
    for what, method, template, path, kwargs in cases:
        resp = full_stack.http.request(method.upper(), full_stack.url(service, path), **kwargs)
        label = f"{service}: {method.upper()} {path} ({what})"
        answered[label] = resp.status_code
        assert resp.status_code < 500, (label, resp.text[:300])
        if what.endswith("on a path without it"):
            assert resp.status_code == 405, label
            _assert_error_body(resp, label)
            continue
        documented = spec["paths"][template][method]["responses"]
        assert str(resp.status_code) in documented, (label, resp.status_code, sorted(documented))
        if resp.status_code >= 400:
            body = _assert_error_body(resp, label)
            if what in ("no key", "an unknown key"):
                assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer", label
            if "path" in what and "NUL" in what or "control character in the path" in what:
                assert resp.status_code == 404, label
            if what.startswith(("garbage in query.", "a NUL in query.")):
                assert resp.status_code == 422, label
                assert f"query.{what.rsplit('query.', 1)[1]}" in [e["field"] for e in body["errors"]], (label, body)
        else:
            assert what == "an unknown id", (label, resp.status_code)  # e.g. a contact nobody decided about
    assert any(code == 405 for code in answered.values())


@pytest.mark.parametrize(("service", "path", "status"), [
    ("sender", "/v1/messages?contact=%00", 422),
    ("sender", "/v1/messages/%00", 404),
    ("trigger-engine", "/v1/contacts/%00/decisions", 404),
    ("trigger-engine", "/v1/contacts/a%00b/decisions?limit=5", 404),
    ("segmenter", "/v1/contacts/%00", 404),
    ("reporting", "/v1/reports/overview?from=%00", 422),
    ("ingest", "/v1/webhooks/whatsapp?hub.challenge=%00", 422),
])
def test_a_nul_in_a_path_or_query_is_a_documented_refusal_not_a_500(full_stack: TestStack, service: str, path: str,
                                                                     status: int) -> None:
    resp = full_stack.http.get(full_stack.url(service, path), headers=full_stack.auth)
    assert resp.status_code == status, resp.text
    _assert_error_body(resp, path)
