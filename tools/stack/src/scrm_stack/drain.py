"""The graceful stop's question: is anything accepted still in flight?

Caught up means, observed twice in a row with the same end offsets in between:
- every consumer group has committed, on every partition of every topic it consumes, the partition's end
  offset (OffsetFetch for explicit partitions, which Tansu answers; end offsets from ListOffsets);
- (phase 1 of the stop only) every service's `outbox` table (found through information_schema) is empty — the
  relay deletes a row once the broker acknowledged it, so a row present is a record not yet published.
Equal end offsets between the two observations prove that nothing was published in between (an outbox row
relayed between the lag check and the outbox check would otherwise go unseen).

Phase 2 of the stop (relays and the sender's dispatcher paused, ingest stopped) asks only for the groups: rows
still in an outbox are durable in PostgreSQL and go out at the next start. A group whose service is gone (the
runner gave up restarting it) can never catch up; the stop leaves it out (`Observation.without`) and names it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from scrm_common.contracts import topics

# Consumer groups of the five services and what they read (group ids in services/*/src: batch_consumer(...)).
# Tansu does not report a group's subscriptions (DescribeGroups answers empty member metadata), so the
# runner names them. Other groups (a bench run, a tool) are not waited for: the stop cannot know whether they
# are still meant to consume.
KNOWN_GROUPS: Mapping[str, tuple[str, ...]] = {
    "trigger-engine": (topics.EVENTS,),
    "sender": (topics.SEND_COMMANDS,),
    "sender-evidence": (topics.EVENTS,),
    # The send gate's reachability records (opt-out, window, zone, preferences) from contact and message events.
    "segmenter": (topics.EVENTS,),
    "reporting": (topics.EVENTS,),
    # Dead letters are stored by reporting and told in the decision story by the trigger-engine.
    "reporting-dead-letters": (topics.DEAD_LETTER,),
    "trigger-engine-dead-letters": (topics.DEAD_LETTER,),
    # The trigger-engine tells failed messages (message.status "failed") in the decision story.
    "trigger-engine-outcomes": (topics.EVENTS,),
    # Ingest learns phone number routing from the sender's account.* events.
    "ingest-accounts": (topics.EVENTS,),
    # Ingest keeps the short links the trigger-engine minted (it answers `GET /l/{code}` from them).
    "ingest-links": (topics.LINKS,),
}

# The service that runs each group (where its records are applied).
GROUP_SERVICE: Mapping[str, str] = {
    "trigger-engine": "trigger-engine",
    "sender": "sender",
    "sender-evidence": "sender",
    "segmenter": "segmenter",
    "reporting": "reporting",
    "reporting-dead-letters": "reporting",
    "trigger-engine-dead-letters": "trigger-engine",
    "trigger-engine-outcomes": "trigger-engine",
    "ingest-accounts": "ingest",
    "ingest-links": "ingest",
}


def groups_of(services: Iterable[str]) -> list[str]:
    """The known consumer groups run by `services` (sorted)."""
    wanted = set(services)
    return sorted(g for g, s in GROUP_SERVICE.items() if s in wanted)


ENV_DRAIN_TIMEOUT = "SCRM_DRAIN_TIMEOUT_SECONDS"
DEFAULT_DRAIN_TIMEOUT = 30.0


@dataclass(frozen=True)
class Observation:
    """What was still in flight at one moment."""

    lag: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (group, topic) -> records not committed
    outbox: Mapping[str, int] = field(default_factory=dict)  # schema -> rows not yet published
    ends: Mapping[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> end offset
    error: str | None = None  # the broker or the database did not answer

    @property
    def idle(self) -> bool:
        """Nothing pending and both sources answered."""
        return self.caught_up and not any(self.outbox.values())

    @property
    def caught_up(self) -> bool:
        """Every group applied every record (outbox rows not counted) and both sources answered."""
        return self.error is None and not any(self.lag.values())

    def without(self, services: Iterable[str]) -> Observation:
        """The same look without what `services` (gone: the runner gave up on them) would have to do: their
        groups and their outbox (schema = service name with `_` for `-`)."""
        gone = set(services)
        skip, schemas = set(groups_of(gone)), {s.replace("-", "_") for s in gone}
        return Observation(lag={k: n for k, n in self.lag.items() if k[0] not in skip},
                           outbox={k: n for k, n in self.outbox.items() if k not in schemas},
                           ends=self.ends, error=self.error)

    def lag_of(self, groups: Iterable[str]) -> int:
        """Records `groups` have not applied, summed."""
        wanted = set(groups)
        return sum(n for (group, _), n in self.lag.items() if group in wanted)

    def pending(self) -> list[str]:
        """What is still in flight, in words (empty when idle)."""
        out = [f"{group} has {n} record{'s' if n != 1 else ''} of {topic} to apply"
               for (group, topic), n in sorted(self.lag.items()) if n]
        out += [f"{schema}.outbox has {n} row{'s' if n != 1 else ''} to publish"
                for schema, n in sorted(self.outbox.items()) if n]
        if self.error:
            out.append(f"could not look: {self.error}")
        return out


def drained(previous: Observation | None, now: Observation, *, outboxes: bool = True) -> bool:
    """True when two observations in a row are idle with the same end offsets (nothing published between).

    With `outboxes=False` (phase 2 of the stop) idle means caught up: rows left in an outbox do not count.
    """
    if previous is None or dict(previous.ends) != dict(now.ends):
        return False
    if outboxes:
        return previous.idle and now.idle
    return previous.caught_up and now.caught_up


def still_in_flight(obs: Observation | None) -> str:
    """The sentence the runner prints when it stops without having drained."""
    if obs is None:
        return "nothing was observed yet"
    items = obs.pending()
    return "; ".join(items) if items else "nothing (the last look found everything applied)"


async def observe(bootstrap: str, pg_dsn: str | None) -> Observation:
    """Look once at consumer lag (if `bootstrap`) and outbox rows (if `pg_dsn`, an asyncpg DSN)."""
    lag: dict[tuple[str, str], int] = {}
    ends: dict[tuple[str, int], int] = {}
    outbox: dict[str, int] = {}
    errors: list[str] = []
    try:
        lag, ends = await asyncio.wait_for(_lag(bootstrap), timeout=10)
    except Exception as exc:  # the broker did not answer: report it, never call it drained
        errors.append(f"broker: {exc!r}")
    if pg_dsn:
        try:
            outbox = await asyncio.wait_for(_outboxes(pg_dsn), timeout=10)
        except Exception as exc:
            errors.append(f"PostgreSQL: {exc!r}")
    return Observation(lag=lag, outbox=outbox, ends=ends, error="; ".join(errors) or None)


async def _lag(bootstrap: str) -> tuple[dict[tuple[str, str], int], dict[tuple[str, int], int]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        await reader.start()
        try:
            names = [t for t in await admin.list_topics() if not t.startswith("__")]
            partitions: dict[str, list[TopicPartition]] = {}
            for topic in names:
                found = reader.partitions_for_topic(topic)
                if not found:
                    await reader._client.force_metadata_update()  # noqa: SLF001 - a topic made after start
                    found = reader.partitions_for_topic(topic) or set()
                partitions[topic] = [TopicPartition(topic, p) for p in sorted(found)]
            every = [tp for tps in partitions.values() for tp in tps]
            end_offsets = await reader.end_offsets(every) if every else {}
            lag: dict[tuple[str, str], int] = {}
            for group, consumed in KNOWN_GROUPS.items():
                wanted = [tp for tp in every if tp.topic in consumed]
                if not wanted:
                    continue
                # A group that never committed (fresh broker, service not yet joined) answers -1 / nothing:
                # it has everything still to apply.
                committed = await admin.list_consumer_group_offsets(group, partitions=wanted)
                for tp in wanted:
                    meta = committed.get(tp)
                    at = meta.offset if meta is not None and meta.offset >= 0 else 0
                    lag[(group, tp.topic)] = lag.get((group, tp.topic), 0) + max(0, end_offsets.get(tp, 0) - at)
            return lag, {(tp.topic, tp.partition): off for tp, off in end_offsets.items()}
        finally:
            await reader.stop()
    finally:
        await admin.close()


async def _outboxes(dsn: str) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        schemas = [r["table_schema"] for r in await conn.fetch(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'outbox' ORDER BY 1")]
        out: dict[str, int] = {}
        for schema in schemas:
            quoted = '"' + schema.replace('"', '""') + '"'
            out[schema] = int(await conn.fetchval(f"SELECT count(*) FROM {quoted}.outbox"))
        return out
    finally:
        await conn.close()


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """`postgresql+asyncpg://…` (the services' form) as a DSN asyncpg accepts."""
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)
