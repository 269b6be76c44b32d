"""`scrm tenants create|list|show|disable|enable`: the installation's tenants (operator token, ingest)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from scrm_cli.api import AsJson, call, console, facts, show, table, when

app = typer.Typer(help="Tenants of the installation (needs the operator token: --admin-token / SCRM_ADMIN_TOKEN).",
                  no_args_is_help=True)

Tenant = Annotated[str, typer.Argument(metavar="TENANT", help="the tenant id, e.g. acme")]


def _path(tenant: str) -> str:
    return f"/v1/admin/tenants/{quote(tenant, safe='')}"


def _one(body: dict[str, Any]) -> None:
    console().print(facts([("tenant", body.get("tenant")), ("name", body.get("name")),
                           ("status", body.get("status")), ("created", when(body.get("created_at"))),
                           ("disabled", when(body.get("disabled_at")))]))


@app.command()
def create(ctx: typer.Context, tenant: Tenant,
           name: Annotated[str | None, typer.Option(help="a display name, e.g. \"ACME GmbH\"")] = None,
           as_json: AsJson = False) -> None:
    """Create a tenant (then: `scrm keys issue --tenant TENANT --role admin`)."""
    body = call(ctx, "ingest", "POST", "/v1/admin/tenants", operator=True,
                body={"tenant": tenant, **({"name": name} if name is not None else {})})
    show(ctx, as_json, body, _one)


@app.command("list")
def list_(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List the tenants."""
    body = call(ctx, "ingest", "GET", "/v1/admin/tenants", operator=True)

    def render(b: dict[str, Any]) -> None:
        tenants = b.get("tenants", [])
        if not tenants:
            console().print("no tenants", markup=False)
            return
        console().print(table("tenants", ("tenant", "name", "status", "created (UTC)", "disabled (UTC)"),
                              ((t.get("tenant"), t.get("name"), t.get("status"), when(t.get("created_at")),
                                when(t.get("disabled_at"))) for t in tenants)))

    show(ctx, as_json, body, render)


@app.command("show")
def show_(ctx: typer.Context, tenant: Tenant, as_json: AsJson = False) -> None:
    """Show one tenant."""
    show(ctx, as_json, call(ctx, "ingest", "GET", _path(tenant), operator=True), _one)


@app.command()
def disable(ctx: typer.Context, tenant: Tenant, as_json: AsJson = False) -> None:
    """Disable a tenant: its keys answer 401 everywhere (within the key cache's lifetime), its webhooks are
    acknowledged and dropped."""
    show(ctx, as_json, call(ctx, "ingest", "PATCH", _path(tenant), operator=True, body={"status": "disabled"}), _one)


@app.command()
def enable(ctx: typer.Context, tenant: Tenant, as_json: AsJson = False) -> None:
    """Enable a disabled tenant again."""
    show(ctx, as_json, call(ctx, "ingest", "PATCH", _path(tenant), operator=True, body={"status": "active"}), _one)
