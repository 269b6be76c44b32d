"""`scrm`: the administration command line (subcommands are added per concern)."""

from __future__ import annotations

import typer

from scrm_cli import dead_letters

app = typer.Typer(name="scrm", help="Administer a running scrm installation.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """Administer a running scrm installation over its HTTP APIs."""


app.add_typer(dead_letters.app, name="dead-letters")


if __name__ == "__main__":
    app()
