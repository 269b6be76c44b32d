"""Entry point: `whatsapp-sim` / `python -m whatsapp_sim.main`."""

from __future__ import annotations

import logging

from scrm_common import runtime
from scrm_common.observability.logging import setup_logging
from scrm_common.runtime import serve
from whatsapp_sim.app import create_app
from whatsapp_sim.config import SimulatorSettings
from whatsapp_sim.simulator import Simulator

log = logging.getLogger(__name__)


async def _main(settings: SimulatorSettings) -> None:
    app = create_app(settings)
    sim: Simulator = app.state.simulator
    log.info("whatsapp simulator on port %d, %d account(s), %d template(s), webhooks to %s",
             settings.simulator_port, len(sim.accounts), len(sim.catalog), settings.simulator_webhook_url)
    await serve(app=app, port=settings.simulator_port, loops=[sim.run], host=settings.simulator_host)


def run() -> None:
    """Run the simulator until SIGTERM/SIGINT."""
    settings = SimulatorSettings()
    setup_logging("whatsapp-sim", settings.log_level)
    runtime.run(_main(settings))


if __name__ == "__main__":
    run()
