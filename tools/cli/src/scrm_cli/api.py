"""What every `scrm` command shares: the global options (base URLs, key, operator token, --json), calling a
service with the right credential, and printing its answer or its error.

Exit codes: 0 done; 1 the API refused or did not answer (its error code, message and each field error are
printed on stderr); 2 a usage error (a missing key or token, a bad argument).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table

from scrm_cli.client import ApiClient, ApiError

# service -> (environment variable, option, default base URL); ports as in CONTRACT §1.
SERVICES: dict[str, tuple[str, str, str]] = {
    "ingest": ("SCRM_INGEST_URL", "--ingest-url", "http://127.0.0.1:8080"),
    "trigger-engine": ("SCRM_TRIGGER_ENGINE_URL", "--trigger-engine-url", "http://127.0.0.1:8081"),
    "sender": ("SCRM_SENDER_URL", "--sender-url", "http://127.0.0.1:8082"),
    "segmenter": ("SCRM_SEGMENTER_URL", "--segmenter-url", "http://127.0.0.1:8083"),
    "reporting": ("SCRM_REPORTING_URL", "--reporting-url", "http://127.0.0.1:8084"),
}

EXIT_API, EXIT_USAGE = 1, 2

# Tests set this to an httpx.MockTransport (or an ASGI transport); None is the real network.
TRANSPORT: httpx.BaseTransport | None = None

AsJson = Annotated[bool, typer.Option("--json", help="print the API's JSON answer (for scripts)")]


@dataclass
class Config:
    """The global options: base URL per service, the tenant API key, the operator token, --json."""

    urls: dict[str, str] = field(default_factory=lambda: {name: url for name, (_, _, url) in SERVICES.items()})
    api_key: str = ""
    admin_token: str = ""
    json: bool = False


def config(ctx: typer.Context) -> Config:
    """The Config the `scrm` callback stored (defaults when a command runs without it, e.g. in a test)."""
    found = ctx.find_object(Config)
    return found if found is not None else Config()


def usage_error(message: str) -> NoReturn:
    """Print `error: message` on stderr and exit 2."""
    Console(stderr=True).print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(EXIT_USAGE)


def call(ctx: typer.Context, service: str, method: str, path: str, *, params: dict[str, Any] | None = None,
         body: Any = None, operator: bool = False) -> Any:
    """Call `service` with the tenant API key (or, with `operator`, the operator token); the decoded answer.
    On an API error print it (code, message, every field error) on stderr and exit 1."""
    cfg = config(ctx)
    if operator:
        token, source = cfg.admin_token.strip(), "SCRM_ADMIN_TOKEN (or --admin-token)"
        if not token:
            usage_error("no operator token: pass --admin-token or set SCRM_ADMIN_TOKEN")
    else:
        token, source = cfg.api_key.strip(), "SCRM_API_KEY (or --api-key)"
        if not token:
            usage_error("no API key: pass --api-key or set SCRM_API_KEY")
    if (problem := token_problem(token)) is not None:
        usage_error(f"{source} {problem}: keys and tokens are printable ASCII; is it the right value?")
    var, option, _ = SERVICES[service]
    url = cfg.urls[service]
    try:
        with ApiClient(url, token, transport=TRANSPORT, hint=f"is {service} running? set {var} or pass {option}"
                       ) as client:
            return client.call(method, path, params=params, body=body)
    except ApiError as exc:
        Console(stderr=True).print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_API) from None


def token_problem(token: str) -> str | None:
    """Why `token` cannot be sent as `Authorization: Bearer <token>` (it never appears in the answer), or
    None. An HTTP header carries only printable ASCII: httpx would fail with a traceback otherwise."""
    if not token.isascii():
        return "holds a non-ASCII character"
    if not token.isprintable() or " " in token:
        return "holds a space or a control character"
    return None


def wants_json(ctx: typer.Context, local: bool) -> bool:
    """--json given globally (`scrm --json …`) or to the command."""
    return local or config(ctx).json


def print_json(body: Any) -> None:
    """The API's answer as indented JSON on stdout."""
    typer.echo(json.dumps(body, indent=2, ensure_ascii=False))


def console() -> Console:
    out = Console(soft_wrap=True)
    # Piped or captured, rich assumes 80 columns and folds table cells a character a line: give tables room.
    return out if out.is_terminal else Console(soft_wrap=True, width=max(out.width, 200))


def say(text: str) -> None:
    """One plain line on stdout (no rich markup interpreted)."""
    console().print(text, markup=False, highlight=False)


def when(value: Any) -> str:
    """An ISO-8601 time as `YYYY-MM-DD HH:MM:SS` UTC; empty for None; as given when it does not parse."""
    if not value:
        return ""
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if parsed.tzinfo is None:
        return str(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def text(value: Any) -> str:
    """A value for a table cell: strings as they are, None empty, anything else as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    """A rich table with a left-aligned title; cells through `text`."""
    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(column, overflow="fold", no_wrap="(UTC)" in column)
    for row in rows:
        out.add_row(*(text(cell) for cell in row))
    return out


def facts(pairs: Iterable[tuple[str, Any]]) -> Table:
    """A two-column `name  value` grid."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in pairs:
        grid.add_row(name, text(value))
    return grid


def flatten(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested objects as dotted keys (`business_hours.start`), the way `set key=value` takes them; lists and
    empty objects stay values."""
    if isinstance(node, dict) and node:
        out: list[tuple[str, Any]] = []
        for key, child in node.items():
            out += flatten(child, f"{prefix}.{key}" if prefix else str(key))
        return out
    return [(prefix, node)]


def show(ctx: typer.Context, local_json: bool, body: Any, render: Callable[[Any], None]) -> None:
    """The API's JSON with --json, else `render(body)`."""
    if wants_json(ctx, local_json):
        print_json(body)
    else:
        render(body)
