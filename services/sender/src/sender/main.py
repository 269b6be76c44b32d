"""Starts the sender: migrations, bootstrap account, command consumer, dispatcher (with the send gate), evidence
and reachability consumers, relay."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from scrm_common import runtime
from scrm_common.clock import SystemClock
from scrm_common.contracts import topics
from scrm_common.contracts.commands import SendMessage, WithdrawMessage, parse_command
from scrm_common.contracts.envelope import EventRecord, PoisonMessage, decoder_for
from scrm_common.db import database_ready
from scrm_common.db.outbox import OutboxRelay
from scrm_common.http import KeyIntrospection, ops_router, service_app
from scrm_common.kafka import ConsumerMetrics, batch_consumer
from scrm_common.kafka.consumer import Item
from scrm_common.observability.logging import setup_logging
from scrm_common.observability.metrics import new_registry
from scrm_common.runtime import serve
from scrm_common.service import infrastructure
from sender.adapters.accounts import AccountRepository, NewAccount
from sender.adapters.accounts import prepare as prepare_accounts
from sender.adapters.cloud_api import CloudApiClient
from sender.adapters.db import Catalog, SendLog, default_catalog
from sender.adapters.http import build_router
from sender.adapters.secrets import TokenCipher
from sender.adapters.templates import TemplateSync, account_tokens, seed_packaged_catalog, sync_at_start
from sender.adapters.templates_http import build_templates_router
from sender.config import Settings
from sender.domain.accounts import AccountPolicy
from sender.domain.outcomes import RetryPolicy
from sender.handlers import EVIDENCE_EVENTS, EVIDENCE_GROUP, CommandHandler, Dispatcher, EvidenceHandler, SenderMetrics
from sender.reachability import REACHABILITY_EVENTS, ReachabilityHandler

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA = "sender"


def bootstrap_account(settings: Settings, now: datetime) -> NewAccount | None:
    """The bootstrap tenant's account from SCRM_BOOTSTRAP_* (CONTRACT §1), R-S3 defaults for its pacing;
    None without a phone number id."""
    if not settings.bootstrap_phone_number_id:
        return None
    return NewAccount(account_id=settings.bootstrap_phone_number_id, waba_id=settings.bootstrap_waba_id,
                      display_name=None, access_token=settings.bootstrap_access_token.get_secret_value(),
                      policy=AccountPolicy(throughput_per_second=round(settings.bootstrap_throughput_per_second)),
                      registered_at=settings.bootstrap_registered(now))


def decode_command(record) -> SendMessage | WithdrawMessage:  # type: ignore[no-untyped-def]
    """A record of `scrm.send-commands.v1` as its command (send or withdrawal); anything else is poison."""
    try:
        return parse_command(record.value or b"")
    except ValueError as exc:
        raise PoisonMessage(f"not a valid send command: {exc}") from None


async def main(settings: Settings) -> None:
    setup_logging("sender", settings.log_level)
    clock = SystemClock()
    async with infrastructure(settings, service="sender", schema=SCHEMA, migrations=MIGRATIONS) as infra:
        engine, producer = infra.engine, infra.producer
        cipher, dev_key = TokenCipher.from_setting(settings.secrets_key.get_secret_value())
        if dev_key:
            log.warning("SCRM_SECRETS_KEY is empty: access tokens are encrypted with the fixed development key; "
                        "set SCRM_SECRETS_KEY (refused empty with SCRM_ENV=prod)")
        send_log = SendLog(cipher)
        accounts = AccountRepository(cipher)
        await prepare_accounts(engine, accounts, tenant=settings.bootstrap_tenant,
                               bootstrap=bootstrap_account(settings, clock.now()), now=clock.now())
        if settings.bootstrap_waba_id:
            async with engine.begin() as conn:
                await seed_packaged_catalog(conn, settings.bootstrap_waba_id, default_catalog(), clock.now())
        registry = new_registry()
        metrics = SenderMetrics(registry)
        relay = OutboxRelay(service="sender", engine=engine, producer=producer, batch_size=1000, poll_seconds=0.1,
                            registry=registry)
        client = CloudApiClient(base_url=settings.whatsapp_base_url, version=settings.whatsapp_api_version,
                                timeout=settings.whatsapp_timeout_seconds,
                                max_connections=settings.whatsapp_max_connections)
        retry = RetryPolicy(max_attempts=settings.max_attempts)
        invalid_ttl = timedelta(days=settings.sender_invalid_number_ttl_days)
        catalog = Catalog(engine)
        dispatcher = Dispatcher(engine=engine, log_=send_log, client=client, clock=clock, metrics=metrics,
                                retry=retry, invalid_number_ttl=invalid_ttl,
                                poll_seconds=settings.dispatch_poll_seconds,
                                doubt_timeout=timedelta(seconds=settings.doubt_timeout_seconds), on_commit=relay.wake,
                                evidence_caught_up=lambda: evidence.caught_up_at,
                                batch_size=settings.dispatch_batch_size,
                                gate_batch_size=settings.dispatch_gate_batch_size)
        consumer_metrics = ConsumerMetrics("sender", registry)
        commands = batch_consumer(
            settings, group_id="sender", topic=topics.SEND_COMMANDS, producer=producer, decode=decode_command,
            handle=CommandHandler(engine=engine, log_=send_log, catalog=catalog, clock=clock, metrics=metrics,
                                  on_commit=lambda: (dispatcher.wake(), relay.wake())),
            metrics=consumer_metrics)
        # One consumer group reads what the sender needs of scrm.events.v1 — the provider's evidence about its
        # messages, accounts and templates, and the contacts' reachability records the send gate reads (R-S6
        # opt-out at once, window, zone, preferences) — each handler in its own transaction, both idempotent.
        # One group, not two: every group costs the broker a full read of the log.
        evidence_handler = EvidenceHandler(engine=engine, log_=send_log, metrics=metrics, clock=clock, retry=retry,
                                           catalog=catalog, invalid_number_ttl=invalid_ttl,
                                           on_commit=lambda: (dispatcher.wake(), relay.wake()))
        reachability_handler = ReachabilityHandler(engine=engine, send_log=send_log, clock=clock, registry=registry,
                                                   on_commit=lambda: (dispatcher.wake(), relay.wake()))

        async def on_events(items: Sequence[Item[EventRecord]]) -> None:
            await evidence_handler(items)
            await reachability_handler(items)

        evidence = batch_consumer(
            settings, group_id=EVIDENCE_GROUP, topic=topics.EVENTS, producer=producer,
            decode=decoder_for(EVIDENCE_EVENTS | REACHABILITY_EVENTS), handle=on_events, metrics=consumer_metrics)
        keys = KeyIntrospection(settings.ingest_url, internal_token=settings.internal_token,
                            ttl_seconds=settings.key_cache_seconds)

        async def ready() -> bool:
            return commands.ready and evidence.ready and await database_ready(engine)

        app = service_app("scrm sender", "0.1.0", description="The send log, WhatsApp accounts and invalid numbers")
        app.include_router(build_router(engine=engine, send_log=send_log, keys=keys, clock=clock, accounts=accounts,
                                        cloud_api=client, on_commit=relay.wake))
        template_sync = TemplateSync(engine=engine, client=client, clock=clock, targets=account_tokens(cipher.decrypt))
        app.include_router(build_templates_router(engine=engine, keys=keys, sync=template_sync))
        app.include_router(ops_router(registry, ready))
        try:
            await serve(app=app, port=settings.sender_port,
                        loops=[commands.run, evidence.run, dispatcher.run, relay.run,
                               sync_at_start(template_sync, settings.bootstrap_tenant,
                                             settings.bootstrap_phone_number_id)])
        finally:
            await client.aclose()
            await keys.aclose()


def run() -> None:
    runtime.run(main(Settings()))


if __name__ == "__main__":
    run()
