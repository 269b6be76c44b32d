"""A small HTTP client of the scrm APIs the CLI uses; every failure becomes an ApiError with the API's words."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    """A call that did not succeed: the HTTP status (None when nothing answered), the error body's code and
    message (CONTRACT §2), and its field errors (`[{"field", "reason"}]`)."""

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


class ApiClient:
    """One service's HTTP API, authenticated with a bearer token (a tenant API key or the operator token).

    `hint` is appended to the error when nothing answers (e.g. "set SCRM_SENDER_URL or pass --sender-url").
    The token is only ever sent as the Authorization header: it is in no error message.
    """

    def __init__(self, base_url: str, token: str, *, transport: httpx.BaseTransport | None = None,
                 timeout: float = 30.0, hint: str = "") -> None:
        self._hint = hint
        self._http = httpx.Client(base_url=base_url.rstrip("/"), transport=transport, timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def call(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        """One request; the decoded JSON answer (None for 204 No Content). Raises ApiError: the API's error
        body for a 4xx/5xx, `unreachable` when nothing answered, `unexpected_answer` for a non-JSON answer."""
        return self._call(method, path, params, body)

    def _call(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp = self._http.request(method, path, params=params, json=body)
        except httpx.HTTPError as exc:
            hint = f" ({self._hint})" if self._hint else ""
            raise ApiError(None, "unreachable", f"{self._http.base_url} did not answer: {exc}{hint}") from None
        if resp.status_code == 204:
            return None
        try:
            decoded = resp.json()
        except ValueError:
            decoded = None
        if resp.is_success and decoded is not None:
            return decoded
        error = decoded.get("error") if isinstance(decoded, dict) else None
        if isinstance(error, dict):
            errors = decoded.get("errors")
            raise ApiError(resp.status_code, str(error.get("code", "error")), str(error.get("message", "")),
                           errors if isinstance(errors, list) else None)
        raise ApiError(resp.status_code, "unexpected_answer", resp.text[:500] or resp.reason_phrase)


class ReportingClient(ApiClient):
    """Reporting's dead-letter routes, authenticated with a tenant API key."""

    def __enter__(self) -> ReportingClient:
        return self

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
