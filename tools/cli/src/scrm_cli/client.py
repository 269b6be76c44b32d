"""A small HTTP client of the scrm APIs the CLI uses; every failure becomes an ApiError with the API's words."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    """A call that did not succeed: the HTTP status (None when nothing answered), the error body's code and
    message (CONTRACT §2), and its field errors."""

    def __init__(self, status: int | None, code: str, message: str,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []

    def __str__(self) -> str:
        head = f"HTTP {self.status} {self.code}: {self.message}" if self.status else f"{self.code}: {self.message}"
        fields = "".join(f"\n  {e.get('field')}: {e.get('reason')}" for e in self.errors)
        return head + fields


class ReportingClient:
    """Reporting's dead-letter routes, authenticated with a tenant API key."""

    def __init__(self, base_url: str, api_key: str, *, transport: httpx.BaseTransport | None = None,
                 timeout: float = 30.0) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), transport=transport, timeout=timeout,
                                  headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"})

    def __enter__(self) -> ReportingClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _call(self, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp = self._http.request(method, path, params=params)
        except httpx.HTTPError as exc:
            raise ApiError(None, "unreachable", f"{self._http.base_url} did not answer: {exc}") from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.is_success and body is not None:
            return body
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            raise ApiError(resp.status_code, str(error.get("code", "error")), str(error.get("message", "")),
                           body.get("errors") if isinstance(body.get("errors"), list) else None)
        raise ApiError(resp.status_code, "unexpected_answer", resp.text[:500] or resp.reason_phrase)

    def dead_letters(self, *, service: str | None = None, event_type: str | None = None,
                     replayed: bool | None = None, limit: int | None = None, cursor: str | None = None) -> Any:
        """`GET /v1/dead-letters`: `{"dead_letters": [...], "next_cursor"}`."""
        flag = None if replayed is None else str(replayed).lower()
        return self._call("GET", "/v1/dead-letters", {"service": service, "type": event_type, "replayed": flag,
                                                       "limit": limit, "cursor": cursor})

    def dead_letter(self, letter_id: int) -> Any:
        """`GET /v1/dead-letters/{id}`."""
        return self._call("GET", f"/v1/dead-letters/{letter_id}")

    def replay(self, letter_id: int, *, force: bool = False) -> Any:
        """`POST /v1/dead-letters/{id}/replay`: `{"dead_letter": {...}, "republished": {topic, partition, offset}}`."""
        return self._call("POST", f"/v1/dead-letters/{letter_id}/replay", {"force": "true" if force else None})
