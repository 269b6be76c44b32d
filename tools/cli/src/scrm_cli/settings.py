"""`scrm flows …` and `scrm settings …`: the tenant's flow settings and tenant settings (trigger-engine).

`set` takes `key=value` arguments: a value is JSON when it parses (`false`, `3`, `null`, `[1,5]`), else a
string; a dotted key builds a nested object (`templates.de=order_confirmation`, `business_hours.start=09:00`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from scrm_cli.api import AsJson, call, console, facts, flatten, say, show, table, text, usage_error, when
from scrm_cli.assignments import BadAssignment, loads_finite, parse_assignments

flows_app = typer.Typer(help="Flow settings: on/off, account, templates per language and the flow's numbers.",
                        no_args_is_help=True)
settings_app = typer.Typer(help="Tenant settings: time zone, business hours, language, shop URLs, home region.",
                           no_args_is_help=True)

Flow = Annotated[str, typer.Argument(metavar="FLOW", help="the flow, e.g. order_confirmation")]
Assignments = Annotated[list[str], typer.Argument(metavar="KEY=VALUE...", show_default=False,
                                                  help="e.g. enabled=false templates.de=order_confirmation")]
META = ("tenant", "flow", "version", "updated_at", "updated_by")


def _assignments(items: list[str]) -> dict[str, Any]:
    try:
        return parse_assignments(items)
    except BadAssignment as exc:
        usage_error(str(exc))


def _flow_path(flow: str) -> str:
    return f"/v1/flows/{quote(flow, safe='')}"


def _settings_of(body: dict[str, Any]) -> dict[str, Any]:
    """The settings object of a FlowRead / settings answer: its `settings`, else the body without metadata."""
    inner = body.get("settings")
    return inner if isinstance(inner, dict) else {k: v for k, v in body.items() if k not in META}


def _one(body: dict[str, Any]) -> None:
    head: list[tuple[str, Any]] = [(name, body.get(name)) for name in ("flow", "tenant", "version") if name in body]
    head += [("updated", f"{when(body.get('updated_at'))} by {body.get('updated_by') or '?'}")] \
        if body.get("updated_at") else []
    if head:
        console().print(facts(head))
    # null shown as such: `set key=null` is how it is given (e.g. account_id=null: the default account)
    console().print(table("settings", ("key", "value"),
                          ((k, "null" if v is None else v) for k, v in flatten(_settings_of(body)))))


def _changes(old: Any, new: Any) -> str:
    """`key: old → new` per changed (dotted) key, one per line."""
    before, after = dict(flatten(old or {})), dict(flatten(new or {}))
    lines = [f"{key}: {text(before.get(key))} → {text(after.get(key))}"
             for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
    return "\n".join(lines) or "(no change)"


def _history(body: dict[str, Any]) -> None:
    changes = body.get("changes", [])
    if not changes:
        say("no changes yet: the defaults apply")
        return
    console().print(table(f"changes of {body.get('flow') or 'the tenant settings'}",
                          ("version", "changed (UTC)", "by", "what"),
                          ((c.get("version"), when(c.get("changed_at")), c.get("changed_by"),
                            _changes(c.get("old"), c.get("new"))) for c in changes)))


@flows_app.command("list")
def flows_list(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List the flows with whether they are on, their account and templates."""
    body = call(ctx, "trigger-engine", "GET", "/v1/flows")

    def render(b: dict[str, Any]) -> None:
        flows = b.get("flows", [])
        if not flows:
            say("no flows")
            return
        console().print(table(f"flows of {b.get('tenant', '?')}",
                              ("flow", "enabled", "account", "templates", "version", "updated (UTC)", "by"),
                              ((f.get("flow"), _settings_of(f).get("enabled"),
                                _settings_of(f).get("account_id") or "(default)", _settings_of(f).get("templates"),
                                f.get("version"), when(f.get("updated_at")), f.get("updated_by")) for f in flows)))

    show(ctx, as_json, body, render)


@flows_app.command("show")
def flows_show(ctx: typer.Context, flow: Flow, as_json: AsJson = False) -> None:
    """Show every setting of a flow (defaults filled in), as `set` takes them."""
    show(ctx, as_json, call(ctx, "trigger-engine", "GET", _flow_path(flow)), _one)


@flows_app.command("set")
def flows_set(ctx: typer.Context, flow: Flow, assignments: Assignments, as_json: AsJson = False) -> None:
    """Change some settings of a flow (PATCH); the next decision uses them. Bad values change nothing."""
    body = _assignments(assignments)
    show(ctx, as_json, call(ctx, "trigger-engine", "PATCH", _flow_path(flow), body=body), _one)


@flows_app.command("replace")
def flows_replace(ctx: typer.Context, flow: Flow,
                  file: Annotated[str, typer.Option("--file", metavar="PATH", help="a JSON file (- for stdin): the "
                                                    "whole settings object, or what `flows show --json` printed")],
                  as_json: AsJson = False) -> None:
    """Replace all settings of a flow (PUT): fields the file leaves out go back to their defaults."""
    try:
        raw = sys.stdin.read() if file == "-" else Path(file).read_text()
        doc = loads_finite(raw)
    except OSError as exc:
        usage_error(f"--file {file}: {exc.strerror or exc}")
    except BadAssignment as exc:
        usage_error(f"--file {file}: {exc}")
    except ValueError as exc:
        usage_error(f"--file {file}: not JSON ({exc})")
    if not isinstance(doc, dict):
        usage_error(f"--file {file}: the settings must be a JSON object")
    if isinstance(doc.get("settings"), dict) and "flow" in doc:  # `scrm flows show FLOW --json`, edited
        doc = doc["settings"]
    show(ctx, as_json, call(ctx, "trigger-engine", "PUT", _flow_path(flow), body=doc), _one)


@flows_app.command("history")
def flows_history(ctx: typer.Context, flow: Flow, as_json: AsJson = False) -> None:
    """Every change of a flow's settings: version, when, which key changed it, old → new."""
    show(ctx, as_json, call(ctx, "trigger-engine", "GET", f"{_flow_path(flow)}/history"), _history)


@settings_app.command("show")
def settings_show(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Show the tenant settings."""
    show(ctx, as_json, call(ctx, "trigger-engine", "GET", "/v1/settings"), _one)


@settings_app.command("set")
def settings_set(ctx: typer.Context, assignments: Assignments, as_json: AsJson = False) -> None:
    """Change some tenant settings (PATCH), e.g. `time_zone=Europe/Berlin business_hours.start=08:00`."""
    body = _assignments(assignments)
    show(ctx, as_json, call(ctx, "trigger-engine", "PATCH", "/v1/settings", body=body), _one)


@settings_app.command("history")
def settings_history(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Every change of the tenant settings."""
    show(ctx, as_json, call(ctx, "trigger-engine", "GET", "/v1/settings/history"), _history)
