"""`scrm dead-letters list|show|replay`: see what a service gave up on, and republish it after a fix."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from scrm_cli import api
from scrm_cli.api import config, usage_error
from scrm_cli.client import ApiError, ReportingClient

app = typer.Typer(help="Dead letters: records a service could not process (list, show, replay).",
                  no_args_is_help=True)

ApiKey = Annotated[str, typer.Option("--api-key", envvar="SCRM_API_KEY", show_default=False,
                                     help="a tenant API key, role read (replay: role admin); default: scrm --api-key")]
Url = Annotated[str | None, typer.Option("--url", envvar="SCRM_REPORTING_URL", show_default=False,
                                         help="reporting's base URL; default: scrm --reporting-url")]
AsJson = Annotated[bool, typer.Option("--json", help="print the API's JSON answer (for scripts)")]



def _reporting(url: str, api_key: str) -> ReportingClient:
    return ReportingClient(url, api_key, transport=api.TRANSPORT,
                           hint="is reporting running? set SCRM_REPORTING_URL or pass --url")


# Tests replace this to talk to a fake API; everything else uses the real HTTP client.
make_client: Callable[[str, str], ReportingClient] = _reporting


def _console() -> Console:
    out = Console(soft_wrap=True)
    # Piped or captured, rich assumes 80 columns and folds table cells a character a line: give tables room.
    return out if out.is_terminal else Console(soft_wrap=True, width=max(out.width, 200))


def _call(ctx: typer.Context, url: str | None, api_key: str, action: Callable[[ReportingClient], Any]) -> Any:
    """Run `action` against the API (the command's --url/--api-key, else the global ones); on failure print the
    API's error and exit non-zero."""
    cfg = config(ctx)
    api_key = (api_key or cfg.api_key).strip()
    url = url or cfg.urls["reporting"]
    if not api_key:
        Console(stderr=True).print("error: no API key: pass --api-key or set SCRM_API_KEY", markup=False)
        raise typer.Exit(2)
    if (problem := api.token_problem(api_key)) is not None:
        usage_error(f"SCRM_API_KEY (or --api-key) {problem}: keys are printable ASCII; is it the right value?")
    try:
        with make_client(url, api_key) as client:
            return action(client)
    except ApiError as exc:
        Console(stderr=True).print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None


def _json(ctx: typer.Context, as_json: bool) -> bool:
    return as_json or config(ctx).json


def _print_json(body: Any) -> None:
    typer.echo(json.dumps(body, indent=2, ensure_ascii=False))


@app.command("list")
def list_(
    ctx: typer.Context, api_key: ApiKey = "", url: Url = None, as_json: AsJson = False,
    service: Annotated[str | None, typer.Option(help="only this service's (e.g. trigger-engine)")] = None,
    event_type: Annotated[str | None, typer.Option("--type", help="only this event type")] = None,
    replayed: Annotated[bool | None, typer.Option("--replayed/--not-replayed", show_default=False,
                                                  help="only replayed, or only not replayed")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="at most this many")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page")] = None,
) -> None:
    """List dead letters, newest first."""
    body = _call(ctx, url, api_key, lambda c: c.dead_letters(service=service, event_type=event_type,
                                                        replayed=replayed, limit=limit, cursor=cursor))
    if _json(ctx, as_json):
        _print_json(body)
        return
    console = _console()
    letters = body.get("dead_letters", [])
    if not letters:
        console.print("no dead letters", markup=False)
        return
    table = Table(title="dead letters, newest first", title_justify="left")
    table.add_column("id", no_wrap=True, justify="right")
    table.add_column("dead-lettered (UTC)", no_wrap=True)
    table.add_column("service", overflow="fold")
    table.add_column("event", overflow="fold")
    table.add_column("contact", overflow="fold")
    table.add_column("replayed", no_wrap=True)
    table.add_column("error", ratio=1)
    for d in letters:
        table.add_row(str(d["id"]), _time(d.get("dead_lettered_at")), d.get("service") or "?",
                      f"{d.get('event_type') or '?'} {d.get('event_id') or ''}".strip(), d.get("contact") or "",
                      f"{d.get('replay_count', 0)}×" if d.get("replayed_at") else "no", _short(d.get("error") or ""))
    console.print(table)
    if body.get("next_cursor"):
        console.print(f"more: --cursor {body['next_cursor']}", markup=False)


@app.command()
def show(
    ctx: typer.Context,
    letter_id: Annotated[int, typer.Argument(metavar="ID", min=1, help="the dead letter's id")],
    api_key: ApiKey = "", url: Url = None, as_json: AsJson = False,
) -> None:
    """Show one dead letter: the service, failure, error, time and the original record."""
    body = _call(ctx, url, api_key, lambda c: c.dead_letter(letter_id))
    if _json(ctx, as_json):
        _print_json(body)
        return
    _show(body)


@app.command()
def replay(
    ctx: typer.Context,
    letter_id: Annotated[int, typer.Argument(metavar="ID", min=1, help="the dead letter's id")],
    api_key: ApiKey = "", url: Url = None, as_json: AsJson = False,
    force: Annotated[bool, typer.Option("--force", help="replay even when it was replayed before")] = False,
) -> None:
    """Republish a dead letter's original record to its original topic (after fixing what made it fail)."""
    body = _call(ctx, url, api_key, lambda c: c.replay(letter_id, force=force))
    if _json(ctx, as_json):
        _print_json(body)
        return
    place = body["republished"]
    _console().print(f"replayed dead letter {letter_id} to {place['topic']} "
                     f"(partition {place['partition']}, offset {place['offset']}); "
                     f"replayed {body['dead_letter']['replay_count']} time(s)", markup=False)


def _time(value: str | None) -> str:
    """An ISO-8601 time as `YYYY-MM-DD HH:MM:SS` in UTC (as given when it does not parse)."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def _short(text: str, width: int = 80) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def _show(d: dict[str, Any]) -> None:
    console = _console()
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    original = d.get("original", {})
    for name, value in (
        ("id", d.get("id")), ("service", d.get("service") or "?"), ("failure", d.get("failure") or "?"),
        ("tries", d.get("tries")), ("dead-lettered at", d.get("dead_lettered_at")),
        ("event", f"{d.get('event_type') or '?'} {d.get('event_id') or ''}".strip()),
        ("contact", d.get("contact")), ("tenant", d.get("tenant")),
        ("from", f"{original.get('topic')} partition {original.get('partition')} offset {original.get('offset')}"),
        ("replayed", f"{d.get('replay_count')}× last {d.get('replayed_at')}" if d.get("replayed_at") else "no"),
        ("key", f"{original.get('key')} ({original.get('key_encoding')})"),
    ):
        facts.add_row(name, "" if value is None else str(value))
    console.print(facts)
    console.print("error:", style="bold")
    console.print(d.get("error", ""), markup=False, highlight=False)
    console.print("headers:", style="bold")
    for h in original.get("headers", []):
        console.print(f"  {h['name']}: {h['value']} ({h['encoding']})", markup=False, highlight=False)
    console.print(f"value ({original.get('value_encoding')}):", style="bold")
    value = original.get("value")
    text = json.dumps(value, indent=2, ensure_ascii=False) if original.get("value_encoding") == "json" else value
    console.print("" if text is None else str(text), markup=False, highlight=False)
