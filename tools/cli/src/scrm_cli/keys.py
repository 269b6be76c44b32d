"""`scrm keys issue|list|revoke`: a tenant's API keys (ingest).

With `--tenant T` the operator token manages tenant T's keys (`/v1/admin/tenants/T/keys`); without it, the
tenant's own admin key manages its tenant's keys (`/v1/keys`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console

from scrm_cli.api import AsJson, call, console, facts, print_json, say, table, wants_json, when

app = typer.Typer(help="API keys with a role: events (a shop's backend), read (analysts), admin (the tenant's owner).",
                  no_args_is_help=True)


class Role(StrEnum):
    events = "events"
    read = "read"
    admin = "admin"


ForTenant = Annotated[str | None, typer.Option(
    "--tenant", help="manage this tenant's keys with the operator token (default: the API key's own tenant)")]

SHOWN_ONCE = "warning: this key is shown once and stored only hashed; keep it now, it cannot be shown again"


def _base(tenant: str | None) -> str:
    return f"/v1/admin/tenants/{quote(tenant, safe='')}/keys" if tenant else "/v1/keys"


@app.command()
def issue(ctx: typer.Context,
          role: Annotated[Role, typer.Option(help="what the key may do", case_sensitive=False)],
          label: Annotated[str | None, typer.Option(help="what the key is for, e.g. \"shop backend\"")] = None,
          tenant: ForTenant = None, as_json: AsJson = False) -> None:
    """Issue a key. The key itself is printed once, here; only its prefix is shown later."""
    body = call(ctx, "ingest", "POST", _base(tenant), operator=tenant is not None,
                body={"role": role.value, **({"label": label} if label is not None else {})})
    if wants_json(ctx, as_json):
        print_json(body)
    else:
        console().print(facts([("id", body.get("id")), ("role", body.get("role")), ("label", body.get("label")),
                               ("prefix", body.get("prefix")), ("created", when(body.get("created_at")))]))
        say(f"key: {body.get('key')}")
    Console(stderr=True).print(SHOWN_ONCE, markup=False, highlight=False)


@app.command("list")
def list_(ctx: typer.Context, tenant: ForTenant = None, as_json: AsJson = False) -> None:
    """List keys: prefix, role, label, created, last used, revoked (never the key)."""
    body = call(ctx, "ingest", "GET", _base(tenant), operator=tenant is not None)

    def render(b: dict[str, Any]) -> None:
        keys = b.get("keys", [])
        if not keys:
            say("no keys")
            return
        console().print(table("keys", ("id", "prefix", "role", "label", "created (UTC)", "last used (UTC)",
                                       "revoked (UTC)", "bootstrap"),
                              ((k.get("id"), k.get("prefix"), k.get("role"), k.get("label"), when(k.get("created_at")),
                                when(k.get("last_used_at")), when(k.get("revoked_at")),
                                "yes" if k.get("bootstrap") else "") for k in keys)))

    if wants_json(ctx, as_json):
        print_json(body)
    else:
        render(body)


@app.command()
def revoke(ctx: typer.Context, key_id: Annotated[str, typer.Argument(metavar="ID", help="the key's id, key_…")],
           tenant: ForTenant = None) -> None:
    """Revoke a key: it stops working everywhere within the services' key cache lifetime."""
    call(ctx, "ingest", "DELETE", f"{_base(tenant)}/{quote(key_id, safe='')}", operator=tenant is not None)
    say(f"revoked {key_id}")
