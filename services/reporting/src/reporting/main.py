"""Entry point: `reporting` / `python -m reporting.main` runs the consumer and HTTP."""

from __future__ import annotations

from reporting.adapters.db import SCHEMA
from reporting.bootstrap import MIGRATIONS, SERVICE, build
from reporting.config import Settings
from scrm_common import runtime
from scrm_common.observability.logging import setup_logging
from scrm_common.runtime import serve
from scrm_common.service import infrastructure


async def main() -> None:
    """Build from the environment and serve until SIGTERM/SIGINT."""
    settings = Settings()
    setup_logging(SERVICE, settings.log_level)
    async with infrastructure(settings, service=SERVICE, schema=SCHEMA, migrations=MIGRATIONS) as infra:
        service = await build(settings, infra)
        try:
            await serve(app=service.app, port=settings.reporting_port, loops=[service.consumer.run,
                                                                           service.dead_letters.run])
        finally:
            await service.aclose()


def run() -> None:
    """Console script."""
    runtime.run(main())


if __name__ == "__main__":
    run()
