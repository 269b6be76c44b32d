"""`scrm templates sync|list`: the message templates of the tenant's accounts (sender)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from scrm_cli.api import AsJson, call, console, say, show, table, when

app = typer.Typer(help="Message templates: pull them from the Cloud API (sync) and list them.", no_args_is_help=True)

Account = Annotated[str | None, typer.Option("--account", metavar="ID", help="only this account (phone number id)")]


@app.command()
def sync(ctx: typer.Context, account: Account = None, as_json: AsJson = False) -> None:
    """Pull the templates of one account (or of all the tenant's accounts) from the Cloud API."""
    body = call(ctx, "sender", "POST", "/v1/templates/sync", body={"account_id": account} if account else {})

    def render(b: dict[str, Any]) -> None:
        say(f"synced {b.get('synced', 0)} template(s)")
        rows = b.get("accounts", [])
        if rows:
            console().print(table("per account", ("phone number id", "WABA", "templates"),
                                  ((r.get("account_id"), r.get("waba_id"), r.get("templates")) for r in rows)))

    show(ctx, as_json, body, render)


@app.command("list")
def list_(ctx: typer.Context, account: Account = None,
          name: Annotated[str | None, typer.Option(help="only templates of this name")] = None,
          language: Annotated[str | None, typer.Option(help="only this language, e.g. de or en_US")] = None,
          status: Annotated[str | None, typer.Option(help="only this status, e.g. APPROVED or PAUSED")] = None,
          category: Annotated[str | None, typer.Option(help="only this category, e.g. UTILITY or MARKETING")] = None,
          as_json: AsJson = False) -> None:
    """List the templates the sender knows, with their status and quality."""
    body = call(ctx, "sender", "GET", "/v1/templates", params={"account_id": account, "name": name,
                                                               "language": language, "status": status,
                                                               "category": category})

    def render(b: dict[str, Any]) -> None:
        templates = b.get("templates", [])
        if not templates:
            say("no templates (run `scrm templates sync` first?)")
            return
        console().print(table(f"templates of {b.get('tenant', '?')}",
                              ("name", "language", "category", "status", "quality", "account / WABA", "reason",
                               "synced (UTC)"),
                              ((t.get("name"), t.get("language"), t.get("category"), t.get("status"),
                                t.get("quality"), t.get("account_id") or t.get("waba_id"), t.get("rejected_reason"),
                                when(t.get("synced_at"))) for t in templates)))

    show(ctx, as_json, body, render)
