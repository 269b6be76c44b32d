"""The sender's tables: accounts and their pacing, the template catalog, the send log."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sender.adapters.secrets import TokenCipher, UnreadableToken
from sender.domain.pacing import PacingPolicy, PacingState
from sender.domain.restrictions import Restriction
from sender.domain.templates import Template, from_catalog_entry, from_components, status_reason

log = logging.getLogger(__name__)


def default_catalog() -> list[Template]:
    """The packaged catalog (`catalog/default_templates.json`): the templates the built-in flows use, seeded
    into the bootstrap account's WABA and served by the simulator."""
    raw = json.loads(resources.files("sender").joinpath("catalog/default_templates.json").read_text())
    return [from_catalog_entry(t) for t in raw]


@dataclass(frozen=True, slots=True)
class Account:
    """An account as the dispatcher paces it: the decrypted access token ("" and `token_unreadable` when
    no key decrypts it: the dispatcher then holds its messages under the TOKEN_UNREADABLE restriction and
    never calls the provider), and when its number was registered (R-S3 new-account protection counts
    from it)."""

    tenant: str
    account_id: str
    access_token: str = field(repr=False)
    policy: PacingPolicy
    pacing: PacingState
    registered_at: datetime
    token_unreadable: bool = False  # no key of SCRM_SECRETS_KEY decrypts the stored token: nothing may be sent


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message handed to the dispatcher: "sending" is already recorded."""

    tenant: str
    idempotency_key: str
    command: dict[str, object]
    attempts: int
    late_retry_attempt: int | None = None
    late_retry_code: int | None = None  # the error code its one 24 h retry was taken for


@dataclass(frozen=True, slots=True)
class Candidate:
    """A due queued message the send gate decides on (locked for the pass): its command, whom it goes to,
    the rule and instant of its last deferral, its expiry, its number's invalid mark (R-S7; None: none), its flow,
    and the reason of a withdrawal stored for its key (a `withdrawals` tombstone; None: not withdrawn)."""

    idempotency_key: str
    command: str  # the stored JSON as text: parsed once, in JSON mode (`handlers.stored_command`)
    contact_key: str
    to_phone: str
    category: str
    rule: str | None
    deferred_until: datetime | None
    expires_at: datetime | None
    invalid_until: datetime | None
    flow: str = ""
    withdrawn: str | None = None


@dataclass(frozen=True, slots=True)
class Reachability:
    """A number's reachability record (table `reachability`, kept by the reachability consumer): opted out of
    marketing since (R-S6; None: not), its last inbound message (24 h window), its zone and whether that was
    derived from the number, stated preferences (jsonb as stored) and Meta's 131049 block."""

    opted_out_at: datetime | None
    last_inbound_at: datetime | None
    timezone: str | None
    zone_derived: bool
    preferences: dict[str, Any]
    blocked_until: datetime | None


@dataclass(frozen=True, slots=True)
class Sent:
    """One message to a contact sent or in flight: its category, when it was claimed (UTC), its fatigue kind
    (the command's `policy.fatigue.rule`, None: none) and whether Meta reported it delivered / read."""

    category: str
    claimed_at: datetime
    fatigue: str | None
    delivered: bool
    read: bool


@dataclass(frozen=True, slots=True)
class Logged:
    """A send-log row as the evidence of a failure needs it (locked for the transaction)."""

    idempotency_key: str
    account_id: str
    to_phone: str
    state: str
    attempts: int
    late_retry_attempt: int | None
    wamid: str | None
    superseded_wamids: list[str]
    late_retry_code: int | None = None


TemplateKey = tuple[str, str, str, str]  # (tenant, account_id, name, language)


def template_from_row(row: Any) -> Template:
    """A `templates` row (category, status, components …) as the domain's Template."""
    return from_components(name=row.name, language=row.language, category=row.category, status=row.status,
                           components=row.components or [], template_id=row.template_id, quality=row.quality,
                           rejected_reason=row.rejected_reason, parameter_format=row.parameter_format)


class Catalog:
    """The templates a send may use: those of the WABA of the command's account (R-S2).

    Read fresh from PostgreSQL on every batch (one query), so a status a webhook or a sync changed on any
    replica governs the next command at once; no cache to invalidate.
    """

    def __init__(self, engine: AsyncEngine, *, ttl_seconds: float = 0.0) -> None:  # noqa: ARG002 (kept for callers)
        self._engine = engine

    async def lookup_many(self, conn: AsyncConnection, keys: set[TemplateKey]) -> dict[TemplateKey, Template]:
        """The template of each (tenant, account_id, name, language) whose account's WABA has one."""
        if not keys:
            return {}
        ordered = sorted(keys)
        rows = await conn.execute(text(
            "SELECT q.t AS tenant, q.a AS account_id, tp.* FROM unnest(CAST(:t AS text[]), CAST(:a AS text[]), "
            "CAST(:n AS text[]), CAST(:l AS text[])) AS q(t, a, n, l) "
            "JOIN accounts ac ON ac.tenant = q.t AND ac.account_id = q.a "
            "JOIN templates tp ON tp.waba_id = ac.waba_id AND tp.name = q.n AND tp.language = q.l"),
            {"t": [k[0] for k in ordered], "a": [k[1] for k in ordered], "n": [k[2] for k in ordered],
             "l": [k[3] for k in ordered]})
        return {(r.tenant, r.account_id, r.name, r.language): template_from_row(r) for r in rows}

    async def lookup(self, tenant: str, account_id: str, name: str, language: str) -> Template | None:
        """The template `name` (`language`) of the WABA of `tenant`'s account `account_id`, or None."""
        key = (tenant, account_id, name, language)
        async with self._engine.connect() as conn:
            return (await self.lookup_many(conn, {key})).get(key)


_LOG_COLUMNS = ("idempotency_key, account_id, flow, category, contact_key, to_phone, state, attempts, wamid, wa_id, "
                "provider_message_status, error_code, error_reason, held_by, late_retry_attempt IS NOT NULL AS "
                "late_retry_used, next_attempt_at, queued_at, sent_at, rule, deferred_until, expires_at, "
                "suppressed_at, delivered_at, read_at")


class SendLog:
    """Every statement the sender runs; methods take the caller's connection (its transaction).

    `cipher` decrypts the stored access tokens (`adapters.secrets`); without one only plain tokens (rows
    written by `bootstrap` below, or by releases before tokens were encrypted) can be read.
    """

    def __init__(self, cipher: TokenCipher | None = None) -> None:
        self._cipher = cipher

    async def bootstrap(self, conn: AsyncConnection, *, tenant: str, account_id: str, access_token: str,
                        throughput: float, created_at: datetime, waba_id: str | None = None) -> None:
        """TEST FIXTURE: write an account row directly — plain token, registered at `created_at`, the number
        taken from whichever tenant had it (tests reuse one number across tenants). The service never
        calls it: its bootstrap account is made by `adapters.accounts.AccountRepository.bootstrap`, like a
        POST /v1/accounts. Templates are the WABA's (`adapters.templates.TemplateStore.seed` / the sync)."""
        await conn.execute(text(
            "INSERT INTO accounts(tenant, account_id, access_token, throughput_per_second, created_at, waba_id, "
            "registered_at, updated_at) VALUES (:t, :a, :tok, :mps, :created, :w, :created, :created) "
            "ON CONFLICT (account_id) DO UPDATE SET tenant = EXCLUDED.tenant, access_token = EXCLUDED.access_token, "
            "token_encrypted = false, throughput_per_second = EXCLUDED.throughput_per_second, "
            "registered_at = EXCLUDED.registered_at, waba_id = COALESCE(EXCLUDED.waba_id, accounts.waba_id)"),
            {"t": tenant, "a": account_id, "tok": access_token, "mps": throughput, "created": created_at,
             "w": waba_id})

    async def known_accounts(self, conn: AsyncConnection, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
        if not keys:
            return set()
        rows = await conn.execute(text(
            "SELECT a.tenant, a.account_id FROM accounts a JOIN unnest(CAST(:t AS text[]), CAST(:a AS text[])) "
            "AS q(t, a) ON a.tenant = q.t AND a.account_id = q.a"),
            {"t": [k[0] for k in keys], "a": [k[1] for k in keys]})
        return {(r.tenant, r.account_id) for r in rows}

    async def invalid_numbers(self, conn: AsyncConnection,
                              keys: set[tuple[str, str]]) -> dict[tuple[str, str], datetime]:
        """When each marked number's invalid mark expires (expired marks included: the domain decides)."""
        if not keys:
            return {}
        rows = await conn.execute(text(
            "SELECT i.tenant, i.phone, i.expires_at FROM invalid_numbers i "
            "JOIN unnest(CAST(:t AS text[]), CAST(:p AS text[])) AS q(t, p) ON i.tenant = q.t AND i.phone = q.p"),
            {"t": [k[0] for k in keys], "p": [k[1] for k in keys]})
        return {(r.tenant, r.phone): r.expires_at for r in rows}

    async def list_invalid_numbers(self, conn: AsyncConnection, tenant: str, now: datetime, *,
                                   include_expired: bool = False) -> list[dict[str, object]]:
        """The tenant's invalid-number marks, newest first (unexpired ones unless asked)."""
        rows = await conn.execute(text(
            "SELECT phone, error_code AS code, marked_at, expires_at FROM invalid_numbers WHERE tenant = :t "
            "AND (:all OR expires_at > :now) ORDER BY marked_at DESC, phone"),
            {"t": tenant, "now": now, "all": include_expired})
        return [dict(r._mapping) for r in rows]

    async def delete_invalid_number(self, conn: AsyncConnection, tenant: str, phone: str) -> bool:
        """Remove a mark; False when the number was not marked."""
        result = await conn.execute(text("DELETE FROM invalid_numbers WHERE tenant = :t AND phone = :p"),
                                    {"t": tenant, "p": phone})
        return bool(result.rowcount)

    async def record(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> set[tuple[str, str]]:
        """Insert send-log rows (queued or failed); return the (tenant, key) pairs that were new."""
        if not rows:
            return set()
        cols = ["tenant", "idempotency_key", "account_id", "flow", "category", "contact_key", "to_phone",
                "command", "state", "next_attempt_at", "queued_at", "event_ingested_at", "error_reason",
                "expires_at", "rule", "suppressed_at"]
        result = await conn.execute(text(
            f"INSERT INTO messages({', '.join(cols)}) SELECT * FROM unnest("
            "CAST(:tenant AS text[]), CAST(:idempotency_key AS text[]), CAST(:account_id AS text[]), "
            "CAST(:flow AS text[]), CAST(:category AS text[]), CAST(:contact_key AS text[]), "
            "CAST(:to_phone AS text[]), CAST(:command AS jsonb[]), CAST(:state AS text[]), "
            "CAST(:next_attempt_at AS timestamptz[]), CAST(:queued_at AS timestamptz[]), "
            "CAST(:event_ingested_at AS timestamptz[]), CAST(:error_reason AS text[]), "
            "CAST(:expires_at AS timestamptz[]), CAST(:rule AS text[]), CAST(:suppressed_at AS timestamptz[])) "
            "ON CONFLICT DO NOTHING RETURNING tenant, idempotency_key"),
            {c: [r.get(c) for r in rows] for c in cols})
        return {(r.tenant, r.idempotency_key) for r in result}

    async def accounts_with_due_work(self, conn: AsyncConnection, now: datetime) -> list[tuple[str, str]]:
        rows = await conn.execute(text(
            "SELECT a.tenant, a.account_id FROM accounts a WHERE EXISTS (SELECT 1 FROM messages m "
            "WHERE m.tenant = a.tenant AND m.account_id = a.account_id AND m.state = 'queued' "
            "AND m.next_attempt_at <= :now)"), {"now": now})
        return [(r.tenant, r.account_id) for r in rows]

    async def lock_account(self, conn: AsyncConnection, tenant: str, account_id: str) -> Account | None:
        """The account row, locked for this transaction; None when another sender holds it."""
        r = (await conn.execute(text(
            "SELECT * FROM accounts WHERE tenant = :t AND account_id = :a FOR UPDATE SKIP LOCKED"),
            {"t": tenant, "a": account_id})).first()
        if r is None:
            return None
        policy = PacingPolicy(
            marketing_min_interval=timedelta(seconds=r.marketing_min_interval_s),
            marketing_max_interval=timedelta(seconds=r.marketing_max_interval_s),
            marketing_per_hour=r.marketing_per_hour, new_account_per_day=r.new_account_per_day,
            new_account_days=r.new_account_days, throughput_per_second=r.throughput_per_second)
        token, unreadable = r.access_token, False
        if r.token_encrypted:
            try:
                if self._cipher is None:
                    raise UnreadableToken("no cipher")
                token = self._cipher.decrypt(token)
            except UnreadableToken:
                token, unreadable = "", True  # held under TOKEN_UNREADABLE until a key or PATCH makes it readable
        return Account(r.tenant, r.account_id, token, policy,
                       PacingState(r.next_marketing_at, r.utility_tokens, r.tokens_at), r.registered_at, unreadable)

    async def marketing_counts(self, conn: AsyncConnection, account: Account, now: datetime) -> tuple[int, int]:
        """Marketing messages handed to the provider in the last hour and the last day."""
        r = (await conn.execute(text(
            "SELECT count(*) FILTER (WHERE claimed_at > :hour) AS hour, count(*) AS day FROM messages "
            "WHERE tenant = :t AND account_id = :a AND category = 'marketing' AND claimed_at > :day"),
            {"t": account.tenant, "a": account.account_id, "hour": now - timedelta(hours=1),
             "day": now - timedelta(days=1)})).one()
        return int(r.hour), int(r.day)

    async def claim(self, conn: AsyncConnection, account: Account, now: datetime, *, utility: int,
                    marketing: int) -> list[Claimed]:
        """Mark due messages "sending" (recorded before the provider call) and return them."""
        claimed: list[Claimed] = []
        for limit, marketing_only in ((utility, False), (marketing, True)):
            if limit <= 0:
                continue
            rows = (await conn.execute(text(
                "UPDATE messages SET state = 'sending', claimed_at = :now, attempts = attempts + 1, held_by = NULL "
                "WHERE (tenant, idempotency_key) IN (SELECT tenant, idempotency_key FROM messages "
                "WHERE tenant = :t AND account_id = :a AND state = 'queued' AND next_attempt_at <= :now "
                f"AND category {'=' if marketing_only else '<>'} 'marketing' "
                "ORDER BY next_attempt_at LIMIT :n FOR UPDATE SKIP LOCKED) "
                "RETURNING tenant, idempotency_key, command, attempts, late_retry_attempt, late_retry_code"),
                {"t": account.tenant, "a": account.account_id, "now": now, "n": limit})).all()
            claimed.extend(Claimed(r.tenant, r.idempotency_key, r.command, r.attempts, r.late_retry_attempt,
                                   r.late_retry_code) for r in rows)
        return claimed

    # -- withdrawals (WithdrawMessage) ---------------------------------------------------------------------

    async def withdrawn(self, conn: AsyncConnection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The withdrawal tombstones of these (tenant, idempotency key) pairs: key → the withdrawal's reason."""
        if not keys:
            return {}
        rows = await conn.execute(text(
            "SELECT w.tenant, w.idempotency_key, w.reason FROM withdrawals w JOIN unnest(CAST(:t AS text[]), "
            "CAST(:k AS text[])) AS q(t, k) ON w.tenant = q.t AND w.idempotency_key = q.k"),
            {"t": [k[0] for k in keys], "k": [k[1] for k in keys]})
        return {(r.tenant, r.idempotency_key): r.reason for r in rows}

    async def message_states(self, conn: AsyncConnection,
                             keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The state of each (tenant, idempotency key) that has a send-log row."""
        ordered = sorted(set(keys))
        if not ordered:
            return {}
        rows = await conn.execute(text(
            "SELECT m.tenant, m.idempotency_key, m.state FROM messages m JOIN unnest(CAST(:t AS text[]), "
            "CAST(:k AS text[])) AS q(t, k) ON m.tenant = q.t AND m.idempotency_key = q.k"),
            {"t": [t for t, _ in ordered], "k": [k for _, k in ordered]})
        return {(r.tenant, r.idempotency_key): r.state for r in rows}

    async def add_withdrawals(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> None:
        """Tombstones for withdrawals that came before their send (`tenant`, `key`, `reason`, `at`): the send,
        when it comes, is recorded suppressed (WITHDRAWN) and never queued. A tombstone stored again stays."""
        if rows:
            await conn.execute(text(
                "INSERT INTO withdrawals(tenant, idempotency_key, reason, withdrawn_at) "
                "VALUES (:tenant, :key, :reason, :at) ON CONFLICT DO NOTHING"), rows)

    async def withdraw_queued(self, conn: AsyncConnection, rows: Sequence[dict[str, object]],
                              rule: str) -> list[tuple[str, str, dict[str, object]]]:
        """Queued messages (`tenant`, `key`, `reason`, `at`) suppressed with `rule` (WITHDRAWN); the
        (tenant, key, command) of those that were still queued — a message claimed, sent, failed or already
        suppressed is left alone."""
        if not rows:
            return []
        result = await conn.execute(text(
            "UPDATE messages m SET state = 'suppressed', rule = :rule, suppressed_at = q.at, error_reason = q.reason, "
            "held_by = NULL FROM unnest(CAST(:t AS text[]), CAST(:k AS text[]), CAST(:r AS text[]), "
            "CAST(:at AS timestamptz[])) AS q(t, k, reason, at) "
            "WHERE m.tenant = q.t AND m.idempotency_key = q.k AND m.state = 'queued' "
            "RETURNING m.tenant, m.idempotency_key, m.command"),
            {"rule": rule, "t": [r["tenant"] for r in rows], "k": [r["key"] for r in rows],
             "r": [r["reason"] for r in rows], "at": [r["at"] for r in rows]})
        return [(r.tenant, r.idempotency_key, r.command) for r in result]

    # -- the send gate ---------------------------------------------------------------------------------------

    async def candidates(self, conn: AsyncConnection, account: Account, now: datetime, *, utility: int,
                         marketing: int) -> list[Candidate]:
        """Due queued messages of the account the gate decides on this pass, in queue order (next_attempt_at,
        queued_at), locked (SKIP LOCKED: a row another transaction holds waits for the next pass): at most
        `utility` non-marketing and `marketing` marketing ones, each with its number's invalid mark (R-S7) and its
        withdrawal tombstone (a withdrawal that came while it was being sent: it must not go again)."""
        if utility <= 0 and marketing <= 0:
            return []
        rows = (await conn.execute(text(
            "SELECT m.idempotency_key, CAST(m.command AS text) AS command, m.contact_key, m.to_phone, m.category, "
            "m.rule, m.deferred_until, m.expires_at, i.expires_at AS invalid_until, m.flow, w.reason AS withdrawn "
            "FROM messages m LEFT JOIN invalid_numbers i ON i.tenant = m.tenant AND i.phone = m.to_phone "
            "LEFT JOIN withdrawals w ON w.tenant = m.tenant AND w.idempotency_key = m.idempotency_key "
            # the keys first (one init plan), then those rows by primary key: never a scan of the table
            "WHERE m.tenant = :t AND m.idempotency_key = ANY(ARRAY("
            "(SELECT idempotency_key FROM messages WHERE tenant = :t AND account_id = :a "
            "AND state = 'queued' AND next_attempt_at <= :now AND category <> 'marketing' "
            "ORDER BY next_attempt_at LIMIT :u) UNION ALL "
            "(SELECT idempotency_key FROM messages WHERE tenant = :t AND account_id = :a "
            "AND state = 'queued' AND next_attempt_at <= :now AND category = 'marketing' "
            "ORDER BY next_attempt_at LIMIT :m))) "
            "AND m.state = 'queued' AND m.next_attempt_at <= :now "
            "ORDER BY m.next_attempt_at, m.queued_at, m.idempotency_key FOR UPDATE OF m SKIP LOCKED"),
            {"t": account.tenant, "a": account.account_id, "now": now, "u": max(0, utility),
             "m": max(0, marketing)})).all()
        return [Candidate(r.idempotency_key, r.command, r.contact_key, r.to_phone, r.category, r.rule,
                          r.deferred_until, r.expires_at, r.invalid_until, r.flow, r.withdrawn) for r in rows]

    async def reachability(self, conn: AsyncConnection, tenant: str,
                           numbers: Iterable[str]) -> dict[str, Reachability]:
        """The reachability record of each number (`scrm_common.identity.match_key` form) that has one."""
        wanted = sorted(set(numbers))
        if not wanted:
            return {}
        rows = await conn.execute(text(
            "SELECT number, opted_out_at, last_inbound_at, timezone, zone_derived, preferences, "
            "marketing_blocked_until FROM reachability WHERE tenant = :t AND number = ANY(CAST(:n AS text[]))"),
            {"t": tenant, "n": wanted})
        return {r.number: Reachability(r.opted_out_at, r.last_inbound_at, r.timezone, bool(r.zone_derived),
                                       dict(r.preferences or {}), r.marketing_blocked_until) for r in rows}

    async def lock_contacts(self, conn: AsyncConnection, tenant: str, contact_keys: Iterable[str]) -> set[str]:
        """Try the gate's per-contact lock of each contact (a transaction-level advisory lock on
        `tenant|gate:contact_key`, in key order, never waiting); the keys whose lock another transaction holds.

        R-S5 counts a contact's history over every account: passes of different accounts (or replicas) that
        gate the same contact's marketing at once would each count without the other's claim. Holding the lock
        from before the history is read until the claim commits serialises them."""
        wanted = sorted(set(contact_keys))
        if not wanted:
            return set()
        rows = await conn.execute(text(
            "SELECT q.k, pg_try_advisory_xact_lock(hashtextextended(CAST(:t AS text) || '|gate:' || q.k, 0)) AS got "
            "FROM unnest(CAST(:k AS text[])) WITH ORDINALITY AS q(k, i) ORDER BY q.i"), {"t": tenant, "k": wanted})
        return {r.k for r in rows if not r.got}

    async def marketing_history(self, conn: AsyncConnection, tenant: str, contact_keys: Iterable[str],
                                since: datetime) -> dict[str, list[Sent]]:
        """Each contact's marketing messages sent or in flight (`sending`/`sent`) claimed after `since`, over every
        account (R-S5 counts what was sent or is in flight, not what was decided), oldest first. Reads the partial
        index `messages_marketing_by_contact`."""
        wanted = sorted(set(contact_keys))
        if not wanted:
            return {}
        rows = await conn.execute(text(
            "SELECT contact_key, category, claimed_at, command -> 'policy' -> 'fatigue' ->> 'rule' AS fatigue, "
            "delivered_at IS NOT NULL AS delivered, read_at IS NOT NULL AS read FROM messages "
            "WHERE tenant = :t AND contact_key = ANY(CAST(:c AS text[])) AND category = 'marketing' "
            "AND claimed_at IS NOT NULL AND claimed_at > :since AND state IN ('sending', 'sent') "
            "ORDER BY claimed_at"), {"t": tenant, "c": wanted, "since": since})
        found: dict[str, list[Sent]] = {}
        for r in rows:
            found.setdefault(r.contact_key, []).append(Sent(r.category, r.claimed_at, r.fatigue, r.delivered, r.read))
        return found

    async def contact_history(self, conn: AsyncConnection, tenant: str, contact_keys: Iterable[str],
                              since: datetime) -> dict[str, list[Sent]]:
        """Each contact's messages of every category sent or in flight (`sending`/`sent`) claimed after `since`,
        over every account, oldest first (fatigue: R-T6.3's read rate, the sends of a kind)."""
        wanted = sorted(set(contact_keys))
        if not wanted:
            return {}
        rows = await conn.execute(text(
            "SELECT contact_key, category, claimed_at, command -> 'policy' -> 'fatigue' ->> 'rule' AS fatigue, "
            "delivered_at IS NOT NULL AS delivered, read_at IS NOT NULL AS read FROM messages "
            "WHERE tenant = :t AND contact_key = ANY(CAST(:c AS text[])) AND state IN ('sending', 'sent') "
            "AND claimed_at > :since ORDER BY claimed_at"), {"t": tenant, "c": wanted, "since": since})
        found: dict[str, list[Sent]] = {}
        for r in rows:
            found.setdefault(r.contact_key, []).append(Sent(r.category, r.claimed_at, r.fatigue, r.delivered, r.read))
        return found

    async def fatigue_pauses(self, conn: AsyncConnection, tenant: str, contact_keys: Iterable[str],
                             now: datetime) -> dict[str, dict[str, datetime]]:
        """Fatigue pauses still running (R-T4.5, R-T6.3): contact key → rule → until."""
        wanted = sorted(set(contact_keys))
        if not wanted:
            return {}
        rows = await conn.execute(text(
            "SELECT contact_key, rule, until FROM fatigue_pauses WHERE tenant = :t "
            "AND contact_key = ANY(CAST(:c AS text[])) AND until > :now"), {"t": tenant, "c": wanted, "now": now})
        found: dict[str, dict[str, datetime]] = {}
        for r in rows:
            found.setdefault(r.contact_key, {})[r.rule] = r.until
        return found

    async def inbound(self, conn: AsyncConnection, tenant: str, numbers: Iterable[str],
                      since: datetime) -> dict[str, list[datetime]]:
        """When each number (match_key form) wrote to us after `since`, oldest first (R-T4.5 reply delays)."""
        wanted = sorted(set(numbers))
        if not wanted:
            return {}
        rows = await conn.execute(text(
            "SELECT number, received_at FROM inbound_log WHERE tenant = :t AND number = ANY(CAST(:n AS text[])) "
            "AND received_at > :since ORDER BY received_at"), {"t": tenant, "n": wanted, "since": since})
        found: dict[str, list[datetime]] = {}
        for r in rows:
            found.setdefault(r.number, []).append(r.received_at)
        return found

    async def claim_keys(self, conn: AsyncConnection, account: Account, now: datetime,
                         keys: Sequence[str]) -> list[Claimed]:
        """Mark these (locked, gated) queued messages "sending" — recorded before the provider call — and return
        them in the order given."""
        if not keys:
            return []
        rows = (await conn.execute(text(
            "UPDATE messages m SET state = 'sending', claimed_at = :now, attempts = m.attempts + 1, held_by = NULL "
            "FROM unnest(CAST(:k AS text[])) AS q(k) WHERE m.tenant = :t AND m.idempotency_key = q.k "
            "AND m.state = 'queued' "
            "RETURNING m.tenant, m.idempotency_key, m.command, m.attempts, m.late_retry_attempt, m.late_retry_code"),
            {"t": account.tenant, "k": list(keys), "now": now})).all()
        by_key = {r.idempotency_key: r for r in rows}
        return [Claimed(r.tenant, r.idempotency_key, r.command, r.attempts, r.late_retry_attempt, r.late_retry_code)
                for k in keys if (r := by_key.get(k)) is not None]

    async def defer(self, conn: AsyncConnection, tenant: str, rows: Sequence[dict[str, object]]) -> None:
        """Queued messages wait (`key`, `until`, `rule`, `reason`): due again at `until`, the rule and the
        instant named (`deferred_until`) recorded."""
        if rows:
            await conn.execute(text(
                "UPDATE messages m SET next_attempt_at = q.until, deferred_until = q.until, rule = q.rule, "
                "error_reason = q.reason FROM unnest(CAST(:k AS text[]), CAST(:u AS timestamptz[]), "
                "CAST(:r AS text[]), CAST(:why AS text[])) AS q(k, until, rule, reason) "
                "WHERE m.tenant = :t AND m.idempotency_key = q.k AND m.state = 'queued'"),
                {"t": tenant, "k": [r["key"] for r in rows], "u": [r["until"] for r in rows],
                 "r": [r["rule"] for r in rows], "why": [r["reason"] for r in rows]})

    async def suppress(self, conn: AsyncConnection, tenant: str, rows: Sequence[dict[str, object]],
                       now: datetime) -> None:
        """Queued messages stopped for good by the gate (`key`, `rule`, `reason`): `suppressed` at `now`."""
        if rows:
            await conn.execute(text(
                "UPDATE messages m SET state = 'suppressed', rule = q.rule, error_reason = q.reason, "
                "suppressed_at = :now, held_by = NULL FROM unnest(CAST(:k AS text[]), CAST(:r AS text[]), "
                "CAST(:why AS text[])) AS q(k, rule, reason) "
                "WHERE m.tenant = :t AND m.idempotency_key = q.k AND m.state = 'queued'"),
                {"t": tenant, "now": now, "k": [r["key"] for r in rows], "r": [r["rule"] for r in rows],
                 "why": [r["reason"] for r in rows]})

    async def store_fatigue_pauses(self, conn: AsyncConnection, tenant: str, rows: Sequence[dict[str, object]],
                                   now: datetime) -> None:
        """Fatigue pauses (`contact`, `rule`, `until`, `reason`): that kind is not sent to the contact before
        `until`; a pause stored again takes the later end."""
        if rows:
            await conn.execute(text(
                "INSERT INTO fatigue_pauses(tenant, contact_key, rule, until, reason, paused_at) "
                "VALUES (:t, :contact, :rule, :until, :reason, :now) ON CONFLICT (tenant, contact_key, rule) "
                "DO UPDATE SET until = GREATEST(fatigue_pauses.until, EXCLUDED.until), reason = EXCLUDED.reason, "
                "paused_at = EXCLUDED.paused_at"), [r | {"t": tenant, "now": now} for r in rows])

    async def wake_after_meta_limit(self, conn: AsyncConnection, keys: Sequence[tuple[str, str]],
                                    now: datetime) -> int:
        """A marketing message of (tenant, idempotency key) settled (delivered, read or failed): the same contact's
        queued marketing waiting behind it after Meta's 131049 block (rule META-131049, due later) is due now, so
        the gate looks at it again. Rows another transaction holds are skipped (they are looked at when due).
        The number woken."""
        ordered = sorted(set(keys))
        if not ordered:
            return 0
        result = await conn.execute(text(
            "UPDATE messages m SET next_attempt_at = :now WHERE (m.tenant, m.idempotency_key) IN ("
            "SELECT w.tenant, w.idempotency_key FROM unnest(CAST(:t AS text[]), CAST(:k AS text[])) AS q(t, k) "
            "JOIN messages s ON s.tenant = q.t AND s.idempotency_key = q.k AND s.category = 'marketing' "
            "JOIN messages w ON w.tenant = s.tenant AND w.contact_key = s.contact_key "
            "WHERE w.state = 'queued' AND w.category = 'marketing' AND w.rule = 'META-131049' "
            "AND w.next_attempt_at > :now FOR UPDATE OF w SKIP LOCKED)"),
            {"now": now, "t": [t for t, _ in ordered], "k": [k for _, k in ordered]})
        return int(result.rowcount or 0)

    async def mark_seen(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> None:
        """Meta reported messages delivered or read (`tenant`, `key`, `status`, `at`): `delivered_at` / `read_at`
        set once (a read message was delivered too) — the read rate of R-T6.3's fatigue index. One statement."""
        if rows:
            await conn.execute(text(
                "UPDATE messages m SET delivered_at = COALESCE(m.delivered_at, q.at), "
                "read_at = COALESCE(m.read_at, q.read_at) "
                "FROM (SELECT t, k, min(at) FILTER (WHERE s = 'read') AS read_at, min(at) AS at "
                "FROM unnest(CAST(:t AS text[]), CAST(:k AS text[]), CAST(:s AS text[]), "
                "CAST(:at AS timestamptz[])) AS u(t, k, s, at) "
                "GROUP BY t, k) AS q WHERE m.tenant = q.t AND m.idempotency_key = q.k"),
                {"t": [r["tenant"] for r in rows], "k": [r["key"] for r in rows], "s": [r["status"] for r in rows],
                 "at": [r["at"] for r in rows]})

    async def hold_due(self, conn: AsyncConnection, account: Account, now: datetime, *, templates: bool | None,
                       until: datetime, reason: str, held_by: str) -> int:
        """Due messages of a restricted account wait until `until` with the reason recorded (R-S8).

        `templates` True holds business-initiated (template) messages, False free-form ones, None all.
        """
        kind = "" if templates is None else "AND command -> 'template' IS NOT NULL " if templates else \
            "AND command -> 'template' IS NULL "
        result = await conn.execute(text(
            "UPDATE messages SET next_attempt_at = :until, error_reason = :reason, held_by = :by "
            "WHERE tenant = :t AND account_id = :a AND state = 'queued' AND next_attempt_at <= :now " + kind),
            {"until": until, "reason": reason, "by": held_by, "t": account.tenant, "a": account.account_id,
             "now": now})
        return int(result.rowcount or 0)

    async def save_pacing(self, conn: AsyncConnection, account: Account, state: PacingState) -> None:
        await conn.execute(text(
            "UPDATE accounts SET next_marketing_at = :n, utility_tokens = :u, tokens_at = :at "
            "WHERE tenant = :t AND account_id = :a"),
            {"n": state.next_marketing_at, "u": state.utility_tokens, "at": state.tokens_at,
             "t": account.tenant, "a": account.account_id})

    async def lock_messages(self, conn: AsyncConnection, keys: Iterable[tuple[str, str]]) -> None:
        """Lock the messages of (tenant, idempotency key) for this transaction, in (tenant, key) order.

        The dispatcher's settlement and the evidence consumer both change rows of the same messages (a
        `sent` webhook often arrives before the settlement commits); each locking them in its own order
        deadlocked (PostgreSQL noticed after deadlock_timeout, 1 s, and one side retried: seconds of stalled
        sends under load). Both lock every row they will touch first, in one order: they wait, never deadlock."""
        ordered = sorted(set(keys))
        if ordered:
            await conn.execute(text(
                "SELECT 1 FROM messages m JOIN unnest(CAST(:t AS text[]), CAST(:k AS text[])) AS q(t, k) "
                "ON m.tenant = q.t AND m.idempotency_key = q.k ORDER BY m.tenant, m.idempotency_key FOR UPDATE OF m"),
                {"t": [t for t, _ in ordered], "k": [k for _, k in ordered]})

    async def mark_sent(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> None:
        """Accepted by the provider: wamid, the recipient's `wa_id` and any `message_status` recorded."""
        if rows:
            await conn.execute(text(
                "UPDATE messages SET state = 'sent', wamid = COALESCE(wamid, :wamid), "
                "sent_at = COALESCE(sent_at, :at), error_code = NULL, error_reason = NULL, held_by = NULL, "
                "wa_id = COALESCE(:wa_id, wa_id), provider_message_status = :message_status "
                "WHERE tenant = :tenant AND idempotency_key = :key AND state IN ('sending', 'sent')"), rows)

    async def mark_retry(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> None:
        """Queued again at `next`; `late` records that this is the one 24 h retry (R-S7), taken for `code`."""
        if rows:
            await conn.execute(text(
                "UPDATE messages SET state = 'queued', next_attempt_at = :next, error_code = :code, "
                "error_reason = :reason, late_retry_attempt = CASE WHEN :late THEN attempts "
                "ELSE late_retry_attempt END, "
                "late_retry_code = CASE WHEN :late THEN CAST(:code AS integer) ELSE late_retry_code END "
                "WHERE tenant = :tenant AND idempotency_key = :key AND state = 'sending'"), rows)

    async def mark_held(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> None:
        """Queued again until the account's hold ends; the attempt that met the hold is not counted."""
        if rows:
            await conn.execute(text(
                "UPDATE messages SET state = 'queued', next_attempt_at = :next, error_code = :code, "
                "error_reason = :reason, held_by = :by, attempts = GREATEST(attempts - 1, 0) "
                "WHERE tenant = :tenant AND idempotency_key = :key AND state = 'sending'"), rows)

    async def mark_failed(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> None:
        if rows:
            await conn.execute(text(
                "UPDATE messages SET state = 'failed', error_code = :code, error_reason = :reason "
                "WHERE tenant = :tenant AND idempotency_key = :key AND state = 'sending'"), rows)

    async def mark_invalid_numbers(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> None:
        """Mark numbers invalid until `expires` (R-S7); marking again renews the mark."""
        if rows:
            await conn.execute(text(
                "INSERT INTO invalid_numbers(tenant, phone, error_code, marked_at, expires_at) "
                "VALUES (:tenant, :phone, :code, :at, :expires) ON CONFLICT (tenant, phone) DO UPDATE SET "
                "error_code = EXCLUDED.error_code, marked_at = EXCLUDED.marked_at, expires_at = EXCLUDED.expires_at"),
                rows)

    async def confirm_by_evidence(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> int:
        """The provider reported on a message: it was accepted, whatever our own record says."""
        if not rows:
            return 0
        result = await conn.execute(text(
            "UPDATE messages m SET state = 'sent', wamid = COALESCE(m.wamid, q.wamid), "
            "sent_at = COALESCE(m.sent_at, q.at) FROM unnest(CAST(:t AS text[]), CAST(:k AS text[]), "
            "CAST(:w AS text[]), CAST(:a AS timestamptz[])) AS q(tenant, key, wamid, at) "
            "WHERE m.tenant = q.tenant AND m.idempotency_key = q.key AND m.attempts > 0 "
            "AND m.state IN ('sending', 'queued') AND NOT (q.wamid = ANY(m.superseded_wamids)) "
            "RETURNING m.idempotency_key"),
            {"t": [r["tenant"] for r in rows], "k": [r["key"] for r in rows], "w": [r["wamid"] for r in rows],
             "a": [r["at"] for r in rows]})
        return len(result.all())

    async def logged_for_update(self, conn: AsyncConnection, tenant: str, key: str) -> Logged | None:
        """The row a provider's failure report is about, locked for this transaction."""
        r = (await conn.execute(text(
            "SELECT idempotency_key, account_id, to_phone, state, attempts, late_retry_attempt, wamid, "
            "superseded_wamids, late_retry_code FROM messages WHERE tenant = :t AND idempotency_key = :k FOR UPDATE"),
            {"t": tenant, "k": key})).first()
        if r is None:
            return None
        return Logged(r.idempotency_key, r.account_id, r.to_phone, r.state, r.attempts, r.late_retry_attempt,
                      r.wamid, list(r.superseded_wamids or ()), r.late_retry_code)

    async def requeue_after_provider_failure(self, conn: AsyncConnection, *, tenant: str, key: str, failed_wamid: str,
                                             next_at: datetime, code: int | None, reason: str, late: bool,
                                             held_by: str | None) -> None:
        """An accepted message failed later: send it again at `next_at` (a retry, or after a hold).

        The failed wamid is remembered so that its later (duplicate, reordered) reports change nothing;
        `late` records that this is the one 24 h retry (R-S7), taken for `code`.
        """
        await conn.execute(text(
            "UPDATE messages SET state = 'queued', next_attempt_at = :next, error_code = :code, "
            "error_reason = :reason, wamid = NULL, sent_at = NULL, "
            "superseded_wamids = array_append(superseded_wamids, CAST(:w AS text)), "
            "late_retry_attempt = CASE WHEN :late THEN attempts ELSE late_retry_attempt END, held_by = :by, "
            "late_retry_code = CASE WHEN :late THEN CAST(:code AS integer) ELSE late_retry_code END, "
            "attempts = CASE WHEN CAST(:by AS text) IS NULL THEN attempts ELSE GREATEST(attempts - 1, 0) END "
            "WHERE tenant = :t AND idempotency_key = :k"),
            {"next": next_at, "code": code, "reason": reason, "w": failed_wamid, "late": late, "by": held_by,
             "t": tenant, "k": key})

    async def fail_by_provider(self, conn: AsyncConnection, *, tenant: str, key: str, code: int | None,
                               reason: str) -> None:
        """The provider accepted a message and later reported it failed for good (CLOUD-API §4.2)."""
        await conn.execute(text(
            "UPDATE messages SET state = 'failed', error_code = :code, error_reason = :reason "
            "WHERE tenant = :t AND idempotency_key = :k"), {"code": code, "reason": reason, "t": tenant, "k": key})

    # -- account restrictions ------------------------------------------------------------------------

    async def restrictions(self, conn: AsyncConnection, tenant: str, account_id: str,
                           now: datetime) -> list[Restriction]:
        """The account's restrictions that have not expired."""
        rows = await conn.execute(text(
            "SELECT kind, scope, until, reason FROM account_restrictions WHERE tenant = :t AND account_id = :a "
            "AND (until IS NULL OR until > :now)"), {"t": tenant, "a": account_id, "now": now})
        return [Restriction(r.kind, r.scope, r.until, r.reason) for r in rows]

    async def accounts_addressed(self, conn: AsyncConnection, tenant: str, account_id: str | None,
                                 waba_id: str | None) -> list[str]:
        """The tenant's accounts an account event is about: the phone number id it names, else every
        account of its WABA (when known), else every account of the tenant. Learns the WABA of a
        named account — unless another tenant's accounts use that WABA (its templates are that tenant's):
        an event never moves a WABA to a tenant that does not own it (checked under the WABA's lock, as
        POST /v1/accounts claims one)."""
        if account_id:
            if waba_id:
                await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('scrm-waba:' || :w))"), {"w": waba_id})
                learned = await conn.execute(text(
                    "UPDATE accounts SET waba_id = :w WHERE tenant = :t AND account_id = :a "
                    "AND waba_id IS DISTINCT FROM :w AND NOT EXISTS (SELECT 1 FROM accounts o "
                    "WHERE o.waba_id = :w AND o.tenant <> :t)"), {"w": waba_id, "t": tenant, "a": account_id})
                if not learned.rowcount:
                    other = (await conn.execute(text(
                        "SELECT 1 FROM accounts WHERE waba_id = :w AND tenant <> :t LIMIT 1"),
                        {"w": waba_id, "t": tenant})).first()
                    if other is not None:
                        log.warning("account update names WABA %s for account %s, but another tenant's accounts "
                                    "use that WABA: the account keeps its own", waba_id, account_id,
                                    extra={"tenant": tenant})
            named = await conn.execute(text(
                "SELECT account_id FROM accounts WHERE tenant = :t AND account_id = :a"),
                {"t": tenant, "a": account_id})
            return [r.account_id for r in named]
        if waba_id:
            rows = (await conn.execute(text(
                "SELECT account_id FROM accounts WHERE tenant = :t AND waba_id = :w ORDER BY account_id"),
                {"t": tenant, "w": waba_id})).all()
            if rows:
                return [r.account_id for r in rows]
        rows = (await conn.execute(text("SELECT account_id FROM accounts WHERE tenant = :t ORDER BY account_id"),
                                   {"t": tenant})).all()
        return [r.account_id for r in rows]

    async def upsert_restrictions(self, conn: AsyncConnection, tenant: str, account_ids: Sequence[str],
                                  restrictions: Sequence[Restriction], now: datetime) -> None:
        """Store restrictions (a kind stored again takes the new expiry and reason)."""
        rows = [{"t": tenant, "a": a, "k": r.kind, "s": r.scope, "u": r.until, "r": r.reason[:1000], "now": now}
                for a in account_ids for r in restrictions]
        if rows:
            await conn.execute(text(
                "INSERT INTO account_restrictions(tenant, account_id, kind, scope, until, reason, updated_at) "
                "VALUES (:t, :a, :k, :s, :u, :r, :now) ON CONFLICT (tenant, account_id, kind) DO UPDATE SET "
                "scope = EXCLUDED.scope, until = EXCLUDED.until, reason = EXCLUDED.reason, "
                "updated_at = EXCLUDED.updated_at"), rows)

    async def lift_restrictions(self, conn: AsyncConnection, tenant: str, account_ids: Sequence[str],
                                kinds: Sequence[str], now: datetime) -> int:
        """Lift restrictions and release the messages that waited for them; the number released."""
        if not account_ids or not kinds:
            return 0
        await conn.execute(text(
            "DELETE FROM account_restrictions WHERE tenant = :t AND account_id = ANY(CAST(:a AS text[])) "
            "AND kind = ANY(CAST(:k AS text[]))"), {"t": tenant, "a": list(account_ids), "k": list(kinds)})
        return await self.release_held(conn, tenant, account_ids, kinds, now)

    async def release_held(self, conn: AsyncConnection, tenant: str, account_ids: Sequence[str],
                           kinds: Sequence[str], now: datetime) -> int:
        """Messages waiting for these restrictions are due now (the dispatcher holds them again if need be)."""
        if not account_ids or not kinds:
            return 0
        result = await conn.execute(text(
            "UPDATE messages SET next_attempt_at = :now, held_by = NULL WHERE tenant = :t "
            "AND account_id = ANY(CAST(:a AS text[])) AND state = 'queued' AND held_by = ANY(CAST(:k AS text[]))"),
            {"now": now, "t": tenant, "a": list(account_ids), "k": list(kinds)})
        return int(result.rowcount or 0)

    # -- templates that may no longer be sent (R-S2) --------------------------------------------------------

    async def due_for_unsendable_templates(self, conn: AsyncConnection, account: Account,
                                           now: datetime) -> list[tuple[str, dict[str, object], str]]:
        """Due queued messages of the account whose template its WABA no longer lets it send (paused, disabled,
        rejected, deleted … since they were queued), locked: (idempotency key, command, reason). Nothing is
        read when every template of the account's WABA may be sent."""
        any_unsendable = (await conn.execute(text(
            "SELECT 1 FROM accounts a JOIN templates t ON t.waba_id = a.waba_id WHERE a.tenant = :t "
            "AND a.account_id = :a AND t.status NOT IN ('APPROVED', 'FLAGGED') LIMIT 1"),
            {"t": account.tenant, "a": account.account_id})).first()
        if any_unsendable is None:
            return []
        rows = await conn.execute(text(
            "SELECT m.idempotency_key, m.command, t.name, t.language, t.status FROM messages m "
            "JOIN accounts a ON a.tenant = m.tenant AND a.account_id = m.account_id "
            "JOIN templates t ON t.waba_id = a.waba_id AND t.name = m.command -> 'template' ->> 'name' "
            "AND t.language = m.command -> 'template' ->> 'language' "
            "WHERE m.tenant = :t AND m.account_id = :a AND m.state = 'queued' AND m.next_attempt_at <= :now "
            "AND t.status NOT IN ('APPROVED', 'FLAGGED') FOR UPDATE OF m SKIP LOCKED"),
            {"t": account.tenant, "a": account.account_id, "now": now})
        return [(r.idempotency_key, r.command, status_reason(r.name, r.language, r.status) or r.status)
                for r in rows]

    async def fail_queued(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> None:
        """Queued messages that may not be sent any more fail with the reason."""
        if rows:
            await conn.execute(text(
                "UPDATE messages SET state = 'failed', error_reason = :reason, held_by = NULL "
                "WHERE tenant = :tenant AND idempotency_key = :key AND state = 'queued'"), rows)

    async def release_doubtful(self, conn: AsyncConnection, now: datetime, cutoff: datetime) -> int:
        """Messages "sending" since before `cutoff` with no evidence: queue them to be sent again."""
        result = await conn.execute(text(
            "UPDATE messages SET state = 'queued', next_attempt_at = :now, "
            "error_reason = 'no evidence of delivery after a crash or timeout; resending' "
            "WHERE state = 'sending' AND claimed_at < :cutoff"), {"now": now, "cutoff": cutoff})
        return int(result.rowcount or 0)

    async def message(self, conn: AsyncConnection, tenant: str, key: str) -> dict[str, object] | None:
        r = (await conn.execute(text(
            f"SELECT {_LOG_COLUMNS} FROM messages WHERE tenant = :t AND idempotency_key = :k"),
            {"t": tenant, "k": key})).first()
        return dict(r._mapping) if r else None

    async def recent(self, conn: AsyncConnection, tenant: str, contact_key: str | None, limit: int, *,
                     phones: Sequence[str] = (), wa_ids: Sequence[str] = ()) -> list[dict]:
        """The newest messages, optionally for one contact: its key, or any of `phones` sent to, or any of
        `wa_ids` WhatsApp answered for the number sent to."""
        rows = await conn.execute(text(
            f"SELECT {_LOG_COLUMNS} FROM messages WHERE tenant = :t "
            "AND (CAST(:c AS text) IS NULL OR contact_key = :c OR to_phone = ANY(CAST(:p AS text[])) "
            "OR wa_id = ANY(CAST(:w AS text[]))) ORDER BY queued_at DESC LIMIT :n"),
            {"t": tenant, "c": contact_key, "p": list(phones), "w": list(wa_ids), "n": limit})
        return [dict(r._mapping) for r in rows]

    async def accounts(self, conn: AsyncConnection, tenant: str, now: datetime,
                       account_id: str | None = None) -> list[dict]:
        """The tenant's accounts (or only `account_id`) with their pacing policy and their restrictions in
        force; never the token."""
        rows = await conn.execute(text(
            "SELECT account_id, waba_id, display_name, marketing_min_interval_s, marketing_max_interval_s, "
            "marketing_per_hour, new_account_per_day, new_account_days, throughput_per_second, registered_at, "
            "created_at, updated_at FROM accounts WHERE tenant = :t "
            "AND (CAST(:a AS text) IS NULL OR account_id = :a) ORDER BY account_id"), {"t": tenant, "a": account_id})
        accounts = [dict(r._mapping) | {"restrictions": []} for r in rows]
        by_id = {a["account_id"]: a for a in accounts}
        restrictions = await conn.execute(text(
            "SELECT account_id, kind, scope, until, reason FROM account_restrictions WHERE tenant = :t "
            "AND (CAST(:a AS text) IS NULL OR account_id = :a) "
            "AND (until IS NULL OR until > :now) ORDER BY account_id, kind"),
            {"t": tenant, "now": now, "a": account_id})
        for r in restrictions:
            if r.account_id in by_id:
                by_id[r.account_id]["restrictions"].append(
                    {"kind": r.kind, "scope": r.scope, "until": r.until, "reason": r.reason})
        return accounts
