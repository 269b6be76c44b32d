"""`scrm`: the administration command line over the services' HTTP APIs.

Global options (or their environment variables) say where the services are and who calls:
`--ingest-url` SCRM_INGEST_URL … `--reporting-url` SCRM_REPORTING_URL, `--api-key` SCRM_API_KEY (a tenant key;
its role decides what it may do), `--admin-token` SCRM_ADMIN_TOKEN (the installation operator's token:
`scrm tenants …`, `scrm keys … --tenant T`), `--json` (the APIs' JSON instead of tables).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from scrm_cli import accounts, dead_letters, keys, settings, templates, tenants
from scrm_cli.api import SERVICES, Config

app = typer.Typer(name="scrm", help="Administer a running scrm installation.", no_args_is_help=True)


def _url(service: str) -> Any:
    """The typer option of a service's base URL: its flag and environment variable."""
    var, option, _ = SERVICES[service]
    return typer.Option(option, envvar=var, help=f"{service}'s base URL", show_default=True)


@app.callback()
def main(
    ctx: typer.Context,
    ingest_url: Annotated[str, _url("ingest")] = SERVICES["ingest"][2],
    trigger_engine_url: Annotated[str, _url("trigger-engine")] = SERVICES["trigger-engine"][2],
    sender_url: Annotated[str, _url("sender")] = SERVICES["sender"][2],
    segmenter_url: Annotated[str, _url("segmenter")] = SERVICES["segmenter"][2],
    reporting_url: Annotated[str, _url("reporting")] = SERVICES["reporting"][2],
    api_key: Annotated[str, typer.Option("--api-key", envvar="SCRM_API_KEY", show_default=False,
                                         help="a tenant API key (role events, read or admin)")] = "",
    admin_token: Annotated[str, typer.Option("--admin-token", envvar="SCRM_ADMIN_TOKEN", show_default=False,
                                             help="the installation operator's token (SCRM_ADMIN_TOKEN)")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="print the APIs' JSON answers (for scripts)")] = False,
) -> None:
    """Administer a running scrm installation over its HTTP APIs: tenants and keys (operator), accounts,
    templates, flows and settings (a tenant's admin key), dead letters."""
    ctx.obj = Config(urls={"ingest": ingest_url, "trigger-engine": trigger_engine_url, "sender": sender_url,
                           "segmenter": segmenter_url, "reporting": reporting_url},
                     api_key=api_key, admin_token=admin_token, json=as_json)


app.add_typer(tenants.app, name="tenants")
app.add_typer(keys.app, name="keys")
app.add_typer(accounts.app, name="accounts")
app.add_typer(templates.app, name="templates")
app.add_typer(settings.flows_app, name="flows")
app.add_typer(settings.settings_app, name="settings")
app.add_typer(dead_letters.app, name="dead-letters")


if __name__ == "__main__":
    app()
