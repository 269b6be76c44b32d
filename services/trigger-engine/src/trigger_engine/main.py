"""Starts the trigger-engine: migrations, event consumer, timer loop, outbox relay, the story's consumers (dead
letters, failed messages), HTTP."""

from __future__ import annotations

from pathlib import Path

from scrm_common import runtime
from scrm_common.clock import SystemClock
from scrm_common.contracts import topics
from scrm_common.contracts.envelope import decoder_for
from scrm_common.db import database_ready
from scrm_common.db.outbox import OutboxRelay
from scrm_common.http import KeyIntrospection, ops_router, service_app
from scrm_common.kafka import ConsumerMetrics, batch_consumer
from scrm_common.links import code_length
from scrm_common.observability.logging import setup_logging
from scrm_common.observability.metrics import new_registry
from scrm_common.runtime import serve
from scrm_common.service import infrastructure
from trigger_engine.adapters.db import EngineRepository
from trigger_engine.adapters.http import build_router
from trigger_engine.adapters.send_log import SendLog
from trigger_engine.adapters.settings_db import SettingsRepository
from trigger_engine.adapters.settings_http import build_settings_router
from trigger_engine.adapters.template_catalog import TemplateCatalog, TemplateGuard
from trigger_engine.adapters.timers import TimerRepository
from trigger_engine.config import Settings
from trigger_engine.configuration import SettingsService, TenantConfigs
from trigger_engine.dead_letters import StoryMetrics, TellDeadLetters, decode_dead_letter
from trigger_engine.domain.dead_letters import STORY_GROUP
from trigger_engine.domain.decide import EVENTS_READ
from trigger_engine.domain.model import LinkKeys
from trigger_engine.domain.outcomes import OUTCOMES_GROUP
from trigger_engine.handlers import EngineMetrics, EventHandler
from trigger_engine.outcomes import OutcomeMetrics, TellFailures, decode_failure
from trigger_engine.timers import TimerLoop, TimerMetrics

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA = "trigger_engine"
GROUP = "trigger-engine"


async def main(settings: Settings) -> None:
    setup_logging("trigger-engine", settings.log_level)
    async with infrastructure(settings, service="trigger-engine", schema=SCHEMA, migrations=MIGRATIONS) as infra:
        engine, producer = infra.engine, infra.producer
        registry = new_registry()
        repository = EngineRepository()
        relay = OutboxRelay(service="trigger-engine", engine=engine, producer=producer,
                            batch_size=settings.relay_batch_size, poll_seconds=settings.relay_poll_seconds,
                            registry=registry)
        settings_repository = SettingsRepository()
        configs = TenantConfigs(repository=settings_repository, defaults=settings.tenant_defaults(),
                                bootstrap=settings.bootstrap(),
                                links=LinkKeys(secret=settings.link_secret, base_url=settings.link_base_url,
                                               code_chars=code_length(settings.link_base_url)))
        engine_metrics = EngineMetrics(registry)
        timer_repository = TimerRepository()
        timers = TimerLoop(engine=engine, repository=repository, timers=timer_repository, configs=configs,
                           clock=SystemClock(), metrics=engine_metrics, timer_metrics=TimerMetrics(registry),
                           on_commit=relay.wake, batch_size=settings.timer_batch_size,
                           poll_seconds=settings.timer_poll_seconds)
        handler = EventHandler(engine=engine, repository=repository, clock=SystemClock(), configs=configs,
                               settings=settings_repository, metrics=engine_metrics, on_commit=relay.wake,
                               timers=timer_repository, on_scheduled=timers.wake_at)
        consumer_metrics = ConsumerMetrics("trigger-engine", registry)
        consumer = batch_consumer(settings, group_id=GROUP, topic=topics.EVENTS, producer=producer,
                                  decode=decoder_for(EVENTS_READ), handle=handler, metrics=consumer_metrics)
        stories = batch_consumer(settings, group_id=STORY_GROUP, topic=topics.DEAD_LETTER, producer=producer,
                                 decode=decode_dead_letter, metrics=consumer_metrics,
                                 handle=TellDeadLetters(engine=engine, repository=repository,
                                                        metrics=StoryMetrics(registry)))
        # Failed messages in their persons' stories: a group of its own, off the decision loop's hot path, with
        # metrics of its own (scrm_trigger_engine_outcomes_…): its lag is not the decision loop's lag.
        outcomes = batch_consumer(settings, group_id=OUTCOMES_GROUP, topic=topics.EVENTS, producer=producer,
                                  decode=decode_failure, metrics=ConsumerMetrics(OUTCOMES_GROUP, registry),
                                  handle=TellFailures(engine=engine, repository=repository,
                                                      metrics=OutcomeMetrics(registry)))
        keys = KeyIntrospection(settings.ingest_url, internal_token=settings.internal_token,
                                ttl_seconds=settings.key_cache_seconds)

        async def ready() -> bool:
            return consumer.ready and stories.ready and outcomes.ready and await database_ready(engine)

        app = service_app("scrm trigger-engine", "0.1.0", description="Decisions about contacts: what was sent, "
                          "scheduled (durable timers that fire once, or expire), cancelled, withdrawn or suppressed, "
                          "and why, and which of the messages failed; each "
                          "tenant's flow and shop settings, effective for the next decision of every replica "
                          "without a restart")
        # The story's delivery half is the sender's send log, asked at read time with the caller's own key.
        send_log = SendLog(settings.sender_url)
        app.include_router(build_router(engine=engine, repository=repository, keys=keys, send_log=send_log))
        catalog = TemplateCatalog(settings.sender_url)
        guard = TemplateGuard(catalog=catalog, configs=configs, repository=settings_repository,
                              bootstrap=settings.bootstrap(), engine=engine)
        app.include_router(build_settings_router(keys=keys, templates=guard, service=SettingsService(
            engine=engine, repository=settings_repository, defaults=settings.tenant_defaults(),
            bootstrap=settings.bootstrap(), clock=SystemClock())))
        app.include_router(ops_router(registry, ready))
        try:
            await serve(app=app, port=settings.trigger_engine_port,
                        loops=[consumer.run, timers.run, relay.run, stories.run, outcomes.run])
        finally:
            await keys.aclose()
            await catalog.aclose()
            await send_log.aclose()


def run() -> None:
    runtime.run(main(Settings()))


if __name__ == "__main__":
    run()
