"""`scrm accounts add|list|show|update|remove`: the tenant's WhatsApp accounts (sender; admin key to change).

The access token is write-only: give it with `--token-env VAR` (read from that environment variable) or at
the hidden prompt; `--token` works too but leaves it in the shell's history. It is never printed.
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import quote

import typer

from scrm_cli.api import AsJson, call, console, facts, say, show, table, usage_error, when

app = typer.Typer(help="WhatsApp accounts (phone numbers) of the tenant: add, list, show, update, remove.",
                  no_args_is_help=True)


class Throughput(StrEnum):
    standard = "80"
    high = "1000"


AccountId = Annotated[str, typer.Argument(metavar="ID", help="the account's phone number id")]
Token = Annotated[str | None, typer.Option("--token", show_default=False,
                                           help="the access token (prefer --token-env or the prompt)")]
TokenEnv = Annotated[str | None, typer.Option("--token-env", metavar="VAR", show_default=False,
                                              help="read the access token from this environment variable")]
Tier = Annotated[Throughput | None, typer.Option("--throughput", show_default=False,
                                                 help="messages per second of the number's tier (default 80)")]
DisplayName = Annotated[str | None, typer.Option(help="the name shown for the number")]
MinInterval = Annotated[float | None, typer.Option("--marketing-min-interval", min=0, show_default=False,
                                                   help="seconds at least between marketing messages")]
MaxInterval = Annotated[float | None, typer.Option("--marketing-max-interval", min=0, show_default=False,
                                                   help="seconds at most between marketing messages")]
PerHour = Annotated[int | None, typer.Option("--marketing-per-hour", min=0, show_default=False,
                                             help="marketing messages per hour at most")]
NewPerDay = Annotated[int | None, typer.Option("--new-account-per-day", min=0, show_default=False,
                                               help="messages per day at most while the number is new")]
NewDays = Annotated[int | None, typer.Option("--new-account-days", min=0, show_default=False,
                                             help="days a number counts as new from its registration")]


def _token(token: str | None, token_env: str | None, *, prompt: bool) -> str | None:
    """The access token from --token, --token-env or (with `prompt`) a hidden prompt; usage error when the
    variable is unset or both are given."""
    if token is not None and token_env is not None:
        usage_error("give the access token once: --token or --token-env, not both")
    if token_env is not None:
        value = os.environ.get(token_env, "")
        if not value:
            usage_error(f"--token-env {token_env}: that environment variable is not set or empty")
        return value
    if token is not None:
        if not token.strip():
            usage_error("--token is empty")
        return token
    if prompt:
        value = typer.prompt("access token (not shown)", hide_input=True)
        if not value.strip():
            usage_error("no access token given")
        return str(value)
    return None


def _pacing(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v is not None}


def _path(account_id: str) -> str:
    return f"/v1/accounts/{quote(account_id, safe='')}"


def _one(a: dict[str, Any]) -> None:
    restrictions = a.get("restrictions") or []
    console().print(facts([
        ("account (phone number id)", a.get("account_id")), ("WABA", a.get("waba_id")),
        ("display name", a.get("display_name")), ("throughput", f"{a.get('throughput_per_second')} msg/s"),
        ("marketing interval", f"{a.get('marketing_min_interval_s')}–{a.get('marketing_max_interval_s')} s"),
        ("marketing per hour", a.get("marketing_per_hour")),
        ("new account", f"< {a.get('new_account_per_day')}/day for {a.get('new_account_days')} days"),
        ("registered", when(a.get("registered_at"))), ("created", when(a.get("created_at"))),
        ("updated", when(a.get("updated_at"))), ("restrictions", restrictions or "none"),
    ]))


@app.command()
def add(ctx: typer.Context,
        phone_number_id: Annotated[str, typer.Option("--phone-number-id", help="the number's phone number id")],
        waba_id: Annotated[str, typer.Option("--waba-id", help="the WhatsApp Business Account id")],
        token: Token = None, token_env: TokenEnv = None, display_name: DisplayName = None, throughput: Tier = None,
        registered_at: Annotated[str | None, typer.Option(
            "--registered-at", show_default=False,
            help="when the number was registered (ISO 8601; default now): new-account limits count from it")] = None,
        marketing_min_interval: MinInterval = None, marketing_max_interval: MaxInterval = None,
        marketing_per_hour: PerHour = None, new_account_per_day: NewPerDay = None, new_account_days: NewDays = None,
        as_json: AsJson = False) -> None:
    """Add a WhatsApp account; the sender checks the token and the number with the Cloud API first."""
    body = {"account_id": phone_number_id, "waba_id": waba_id,
            "access_token": _token(token, token_env, prompt=True),
            **_pacing(display_name=display_name, registered_at=registered_at,
                      throughput_per_second=int(throughput.value) if throughput else None,
                      marketing_min_interval_s=marketing_min_interval, marketing_max_interval_s=marketing_max_interval,
                      marketing_per_hour=marketing_per_hour, new_account_per_day=new_account_per_day,
                      new_account_days=new_account_days)}
    show(ctx, as_json, call(ctx, "sender", "POST", "/v1/accounts", body=body), _one)


@app.command("list")
def list_(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List the tenant's accounts."""
    body = call(ctx, "sender", "GET", "/v1/accounts")

    def render(b: dict[str, Any]) -> None:
        accounts = b.get("accounts", [])
        if not accounts:
            say(f"no accounts for tenant {b.get('tenant', '?')}")
            return
        console().print(table(f"accounts of {b.get('tenant', '?')}",
                              ("phone number id", "WABA", "name", "msg/s", "marketing/h", "registered (UTC)",
                               "restrictions"),
                              ((a.get("account_id"), a.get("waba_id"), a.get("display_name"),
                                a.get("throughput_per_second"), a.get("marketing_per_hour"),
                                when(a.get("registered_at")), len(a.get("restrictions") or []) or "")
                               for a in accounts)))

    show(ctx, as_json, body, render)


@app.command("show")
def show_(ctx: typer.Context, account_id: AccountId, as_json: AsJson = False) -> None:
    """Show one account with its pacing policy and restrictions."""
    show(ctx, as_json, call(ctx, "sender", "GET", _path(account_id)), _one)


@app.command()
def update(ctx: typer.Context, account_id: AccountId, token: Token = None, token_env: TokenEnv = None,
           display_name: DisplayName = None, throughput: Tier = None,
           marketing_min_interval: MinInterval = None, marketing_max_interval: MaxInterval = None,
           marketing_per_hour: PerHour = None, new_account_per_day: NewPerDay = None, new_account_days: NewDays = None,
           as_json: AsJson = False) -> None:
    """Change an account: only the options given (a new token, the tier, the pacing policy)."""
    access_token = _token(token, token_env, prompt=False)
    body = _pacing(access_token=access_token, display_name=display_name,
                   throughput_per_second=int(throughput.value) if throughput else None,
                   marketing_min_interval_s=marketing_min_interval, marketing_max_interval_s=marketing_max_interval,
                   marketing_per_hour=marketing_per_hour, new_account_per_day=new_account_per_day,
                   new_account_days=new_account_days)
    if not body:
        usage_error("nothing to change: give at least one option (see --help)")
    show(ctx, as_json, call(ctx, "sender", "PATCH", _path(account_id), body=body), _one)


@app.command()
def remove(ctx: typer.Context, account_id: AccountId,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False) -> None:
    """Remove an account: nothing is sent from it any more and its webhooks are no longer routed to the tenant."""
    if not yes:
        typer.confirm(f"remove account {account_id}?", abort=True)
    call(ctx, "sender", "DELETE", _path(account_id))
    say(f"removed account {account_id}")
