"""The WhatsApp accounts of each tenant (`accounts` table): created, changed and removed through
`/v1/accounts` and the bootstrap alike, each change announced on `scrm.events.v1` through the outbox.

A phone number id — and the WABA it belongs to — is owned by exactly one tenant (a unique index on
`account_id`; a WABA check under an advisory lock). Access tokens are stored encrypted (`TokenCipher`).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scrm_common.contracts import topics
from scrm_common.contracts.envelope import encode_event
from scrm_common.contracts.events import AccountRegistered, AccountRegistrationData, AccountRemoved
from scrm_common.db.outbox import OutboxRow, enqueue
from sender.adapters.secrets import TokenCipher, UnreadableToken
from sender.domain.accounts import AccountPolicy

log = logging.getLogger(__name__)

POLICY_FIELDS = tuple(f.name for f in fields(AccountPolicy))
# The restriction an account whose stored token no key decrypts carries until a new token is set.
TOKEN_UNREADABLE = "TOKEN_UNREADABLE"
UNREADABLE_REASON = ("no key of SCRM_SECRETS_KEY decrypts the stored access token: set it again with "
                     "PATCH /v1/accounts/{account_id}")
REMOVED_REASON = "account removed"


@dataclass(frozen=True, slots=True)
class NewAccount:
    """An account to store: its phone number id, WABA, display name, access token (plain; encrypted
    when stored), policy and when its number was registered (R-S3 protection counts from it)."""

    account_id: str
    waba_id: str | None
    display_name: str | None
    access_token: str = field(repr=False)
    policy: AccountPolicy
    registered_at: datetime


class AccountConflict(Exception):
    """The number (or its WABA) is another tenant's (`code` account_taken) or already this tenant's
    (`account_exists`). The message never names the other tenant."""

    def __init__(self, code: Literal["account_taken", "account_exists"], message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def policy_of(row: Mapping[str, Any]) -> AccountPolicy:
    """The policy columns of an `accounts` row."""
    return AccountPolicy(
        throughput_per_second=round(row["throughput_per_second"]),
        marketing_min_interval_s=row["marketing_min_interval_s"],
        marketing_max_interval_s=row["marketing_max_interval_s"],
        marketing_per_hour=row["marketing_per_hour"], new_account_per_day=row["new_account_per_day"],
        new_account_days=row["new_account_days"])


def account_event(kind: Literal["registered", "removed"], tenant: str, row: Mapping[str, Any],
                  now: datetime) -> OutboxRow:
    """`account.registered` / `account.removed` for the outbox: key `<tenant>:account:<id>`, header
    `tenant` = the owner; the data names the number, its WABA, display name and registration time."""
    data = AccountRegistrationData(account_id=row["account_id"], waba_id=row.get("waba_id"),
                                   display_name=row.get("display_name"), registered_at=row.get("registered_at"))
    event_id = f"sender:account-{kind}:{uuid.uuid4().hex}"
    event = AccountRegistered(event_id=event_id, type="account.registered", occurred_at=now, data=data) \
        if kind == "registered" else AccountRemoved(event_id=event_id, type="account.removed", occurred_at=now,
                                                    data=data)
    key, value, headers = encode_event(tenant, event, ingested_at=now)
    return OutboxRow(topics.EVENTS, key, value, [(k, v.decode()) for k, v in headers])


_COLUMNS = ("tenant, account_id, waba_id, display_name, throughput_per_second, marketing_min_interval_s, "
            "marketing_max_interval_s, marketing_per_hour, new_account_per_day, new_account_days, registered_at, "
            "created_at, updated_at")


@dataclass(frozen=True, slots=True)
class SecuredTokens:
    """What the start's pass over stored tokens did: plain ones encrypted, ones under an older key
    re-encrypted under the first, and the accounts whose token no key decrypts."""

    encrypted: int
    rotated: int
    unreadable: list[tuple[str, str]]
    total: int = 0  # accounts looked at
    from_dev_key: int = 0  # of `rotated`: rows that were under the public development key
    readable_again: int = 0  # accounts whose TOKEN_UNREADABLE restriction was lifted (their key is back)

    @property
    def left(self) -> int:
        """Rows left not under the first key after the pass (only those no key decrypts)."""
        return len(self.unreadable)


class AccountRepository:
    """Every statement about accounts; methods take the caller's connection (its transaction)."""

    def __init__(self, cipher: TokenCipher) -> None:
        self._cipher = cipher

    async def owner(self, conn: AsyncConnection, account_id: str) -> str | None:
        """The tenant owning a phone number id, or None."""
        return (await conn.execute(text("SELECT tenant FROM accounts WHERE account_id = :a"),
                                   {"a": account_id})).scalar()

    async def token(self, conn: AsyncConnection, tenant: str, account_id: str) -> str:
        """The tenant's account's access token in plain (rows of earlier releases hold it unencrypted).

        Raises LookupError when the tenant has no such account, `UnreadableToken` when no key decrypts it.
        """
        row = (await conn.execute(text(
            "SELECT access_token, token_encrypted FROM accounts WHERE tenant = :t AND account_id = :a"),
            {"t": tenant, "a": account_id})).first()
        if row is None:
            raise LookupError(account_id)
        return self._cipher.decrypt(row.access_token) if row.token_encrypted else str(row.access_token)

    async def conflict(self, conn: AsyncConnection, tenant: str, account_id: str, waba_id: str | None) -> None:
        """Raise `AccountConflict` when `tenant` may not add `account_id` of `waba_id`."""
        owner = await self.owner(conn, account_id)
        if owner == tenant:
            raise AccountConflict("account_exists", f"account {account_id} already exists; change it with "
                                                    f"PATCH /v1/accounts/{account_id}")
        if owner is not None:
            raise AccountConflict("account_taken", f"phone number id {account_id} belongs to another tenant")
        if waba_id is not None:
            await self.waba_conflict(conn, tenant, waba_id)

    async def waba_conflict(self, conn: AsyncConnection, tenant: str, waba_id: str) -> None:
        """Raise `AccountConflict` (account_taken) when another tenant's accounts use WABA `waba_id` (its
        templates are that tenant's)."""
        other = (await conn.execute(text("SELECT 1 FROM accounts WHERE waba_id = :w AND tenant <> :t LIMIT 1"),
                                    {"w": waba_id, "t": tenant})).first()
        if other is not None:
            raise AccountConflict("account_taken", f"WABA {waba_id} belongs to another tenant")

    async def lock_waba(self, conn: AsyncConnection, waba_id: str) -> None:
        """Serialise claims of one WABA until this transaction ends (two tenants claiming it at once)."""
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('scrm-waba:' || :w))"), {"w": waba_id})

    async def locked(self, conn: AsyncConnection, tenant: str, account_id: str) -> dict[str, Any] | None:
        """The tenant's account row (no token), locked for this transaction; None when it has none."""
        r = (await conn.execute(text(
            f"SELECT {_COLUMNS} FROM accounts WHERE tenant = :t AND account_id = :a FOR UPDATE"),
            {"t": tenant, "a": account_id})).first()
        return dict(r._mapping) if r else None

    async def create(self, conn: AsyncConnection, tenant: str, new: NewAccount, now: datetime) -> dict[str, Any]:
        """Store a new account of `tenant` and write `account.registered`; the row (no token).

        Raises `AccountConflict` (another tenant's number or WABA: `account_taken`; this tenant's:
        `account_exists`), also when a concurrent request claimed it first.
        """
        if new.waba_id is not None:  # two tenants claiming one WABA at once: one waits for the other
            await self.lock_waba(conn, new.waba_id)
        await self.conflict(conn, tenant, new.account_id, new.waba_id)
        p = new.policy
        row = (await conn.execute(text(
            "INSERT INTO accounts(tenant, account_id, waba_id, display_name, access_token, token_encrypted, "
            "throughput_per_second, marketing_min_interval_s, marketing_max_interval_s, marketing_per_hour, "
            "new_account_per_day, new_account_days, registered_at, created_at, updated_at, announced_at) "
            "VALUES (:t, :a, :w, :d, :tok, true, :tps, :lo, :hi, :ph, :npd, :nd, :reg, :now, :now, :now) "
            f"ON CONFLICT (account_id) DO NOTHING RETURNING {_COLUMNS}"),
            {"t": tenant, "a": new.account_id, "w": new.waba_id, "d": new.display_name,
             "tok": self._cipher.encrypt(new.access_token), "tps": p.throughput_per_second,
             "lo": p.marketing_min_interval_s, "hi": p.marketing_max_interval_s, "ph": p.marketing_per_hour,
             "npd": p.new_account_per_day, "nd": p.new_account_days, "reg": new.registered_at, "now": now})).first()
        if row is None:  # claimed between the check and the insert
            await self.conflict(conn, tenant, new.account_id, None)
            raise AccountConflict("account_taken", f"phone number id {new.account_id} belongs to another tenant")
        created = dict(row._mapping)
        await enqueue(conn, [account_event("registered", tenant, created, now)])
        return created

    async def update(self, conn: AsyncConnection, tenant: str, account_id: str, changes: Mapping[str, Any],
                     now: datetime) -> dict[str, Any]:
        """Apply `changes` (policy fields, `waba_id`, `display_name`, `registered_at`, `access_token` in
        plain) to the tenant's account and write `account.registered`; the row (no token). A new token
        lifts the `TOKEN_UNREADABLE` restriction and releases the messages it held. The caller validated and
        locked the row."""
        allowed = {*POLICY_FIELDS, "waba_id", "display_name", "registered_at"}
        values = {k: v for k, v in changes.items() if k in allowed}
        sets = [f"{k} = :{k}" for k in values]
        if "access_token" in changes:
            sets += ["access_token = :access_token", "token_encrypted = true"]
            values["access_token"] = self._cipher.encrypt(changes["access_token"])
            await conn.execute(text(
                "DELETE FROM account_restrictions WHERE tenant = :t AND account_id = :a AND kind = :k"),
                {"t": tenant, "a": account_id, "k": TOKEN_UNREADABLE})
            await conn.execute(text(  # what waited for a readable token goes now
                "UPDATE messages SET next_attempt_at = :now, held_by = NULL WHERE tenant = :t AND account_id = :a "
                "AND state = 'queued' AND held_by = :k"),
                {"now": now, "t": tenant, "a": account_id, "k": TOKEN_UNREADABLE})
        row = (await conn.execute(text(
            f"UPDATE accounts SET {', '.join([*sets, 'updated_at = :now', 'announced_at = :now'])} "
            f"WHERE tenant = :t AND account_id = :a RETURNING {_COLUMNS}"),
            {**values, "now": now, "t": tenant, "a": account_id})).one()
        updated = dict(row._mapping)
        await enqueue(conn, [account_event("registered", tenant, updated, now)])
        return updated

    async def delete(self, conn: AsyncConnection, tenant: str, account_id: str,
                     now: datetime) -> list[dict[str, Any]] | None:
        """Remove the tenant's account and its restrictions, fail its queued messages with "account
        removed" and write `account.removed`; the failed messages' commands, or None when the tenant
        has no such account."""
        row = await self.locked(conn, tenant, account_id)
        if row is None:
            return None
        failed = (await conn.execute(text(
            "UPDATE messages SET state = 'failed', error_reason = :r, held_by = NULL "
            "WHERE tenant = :t AND account_id = :a AND state = 'queued' RETURNING command"),
            {"r": REMOVED_REASON, "t": tenant, "a": account_id})).scalars().all()
        await conn.execute(text("DELETE FROM account_restrictions WHERE tenant = :t AND account_id = :a"),
                           {"t": tenant, "a": account_id})
        await conn.execute(text("DELETE FROM accounts WHERE tenant = :t AND account_id = :a"),
                           {"t": tenant, "a": account_id})
        await enqueue(conn, [account_event("removed", tenant, row, now)])
        return list(failed)

    async def bootstrap(self, conn: AsyncConnection, tenant: str, new: NewAccount,
                        now: datetime) -> Literal["created", "updated", "unchanged", "taken"]:
        """The bootstrap tenant's account (CONTRACT §1), idempotent: created like a POST when absent (the
        environment is the operator's word: no provider check). When present, the environment's token and
        WABA are applied only when the ENVIRONMENT's value changed since it was last applied (its sha256
        and WABA id are kept on the row, migration 007): a token or WABA set through PATCH /v1/accounts
        survives restarts with the same environment, and a new value in the environment wins once. The
        policy, display name and `registered_at` set through the API are always kept. "taken" — nothing
        changed, an error logged — when another tenant owns the number; a WABA another tenant's accounts use
        is not applied (logged, tried again at the next start)."""
        if new.waba_id is not None:
            await self.lock_waba(conn, new.waba_id)
        digest = token_digest(new.access_token)
        owner = await self.owner(conn, new.account_id)
        if owner is None:
            try:
                await self.create(conn, tenant, new, now)
            except AccountConflict as exc:
                log.error("bootstrap account %s not added for tenant %s: %s", new.account_id, tenant, exc.message)
                return "taken"
            await self._applied(conn, tenant, new.account_id, digest, new.waba_id)
            return "created"
        if owner != tenant:
            log.error("bootstrap account %s not added for tenant %s: the phone number id belongs to another "
                      "tenant; it stays there (remove it there first to move it)", new.account_id, tenant)
            return "taken"
        stored = (await conn.execute(text(
            "SELECT access_token, token_encrypted, waba_id, bootstrap_token_sha256, bootstrap_waba_id FROM accounts "
            "WHERE tenant = :t AND account_id = :a FOR UPDATE"), {"t": tenant, "a": new.account_id})).one()
        changes: dict[str, Any] = {}
        waba_applied = stored.bootstrap_waba_id
        if new.waba_id is not None and new.waba_id != stored.bootstrap_waba_id:  # the environment's WABA changed
            if new.waba_id == stored.waba_id:
                waba_applied = new.waba_id
            else:
                try:
                    await self.waba_conflict(conn, tenant, new.waba_id)
                    changes["waba_id"] = waba_applied = new.waba_id
                except AccountConflict as exc:
                    log.error("bootstrap account %s keeps its WABA: %s", new.account_id, exc.message)
        token_changed = digest != stored.bootstrap_token_sha256  # the environment's token changed
        if token_changed:
            try:
                current = self._cipher.decrypt(stored.access_token) if stored.token_encrypted else stored.access_token
            except UnreadableToken:
                current = None
            if current != new.access_token:
                changes["access_token"] = new.access_token
        if changes:
            await self.update(conn, tenant, new.account_id, changes, now)
        if token_changed or waba_applied != stored.bootstrap_waba_id:
            await self._applied(conn, tenant, new.account_id, digest, waba_applied)
        return "updated" if changes else "unchanged"

    async def _applied(self, conn: AsyncConnection, tenant: str, account_id: str, digest: str,
                       waba_id: str | None) -> None:
        """Remember what the bootstrap last applied from the environment (the token's sha256, the WABA)."""
        await conn.execute(text(
            "UPDATE accounts SET bootstrap_token_sha256 = :d, bootstrap_waba_id = :w WHERE tenant = :t "
            "AND account_id = :a"), {"d": digest, "w": waba_id, "t": tenant, "a": account_id})

    async def secure_tokens(self, conn: AsyncConnection, now: datetime) -> SecuredTokens:
        """Encrypt plain tokens (rows of earlier releases) and re-encrypt those not under the first key
        (rotation); an account whose token no key decrypts gets the `TOKEN_UNREADABLE` restriction (its
        messages wait until PATCH sets a new token). Run at start, in one transaction."""
        rows = (await conn.execute(text(
            "SELECT tenant, account_id, access_token, token_encrypted FROM accounts ORDER BY tenant, account_id "
            "FOR UPDATE"))).all()
        encrypted = rotated = from_dev = 0
        unreadable: list[tuple[str, str]] = []
        for r in rows:
            if not r.token_encrypted:
                value = self._cipher.encrypt(r.access_token)
                encrypted += 1
            elif self._cipher.is_current(r.access_token):
                continue
            else:
                try:
                    value = self._cipher.rotate(r.access_token)
                except UnreadableToken:
                    unreadable.append((r.tenant, r.account_id))
                    continue
                rotated += 1
                from_dev += self._cipher.under_dev_key(r.access_token)
            await conn.execute(text(
                "UPDATE accounts SET access_token = :v, token_encrypted = true WHERE tenant = :t AND account_id = :a"),
                {"v": value, "t": r.tenant, "a": r.account_id})
        if unreadable:
            await conn.execute(text(
                "INSERT INTO account_restrictions(tenant, account_id, kind, scope, until, reason, updated_at) "
                "SELECT t, a, :k, 'all', NULL, :r, :now FROM unnest(CAST(:ts AS text[]), CAST(:ids AS text[])) "
                "AS q(t, a) ON CONFLICT (tenant, account_id, kind) DO UPDATE SET updated_at = EXCLUDED.updated_at"),
                {"k": TOKEN_UNREADABLE, "now": now, "ts": [u[0] for u in unreadable], "ids": [u[1] for u in unreadable],
                 "r": UNREADABLE_REASON})
        # a restriction of an earlier start whose token a key decrypts now (the key is back): lifted, its
        # messages released
        lifted = (await conn.execute(text(
            "DELETE FROM account_restrictions r WHERE r.kind = :k AND (r.tenant, r.account_id) NOT IN "
            "(SELECT * FROM unnest(CAST(:ts AS text[]), CAST(:ids AS text[]))) RETURNING r.tenant, r.account_id"),
            {"k": TOKEN_UNREADABLE, "ts": [u[0] for u in unreadable], "ids": [u[1] for u in unreadable]})).all()
        if lifted:
            await conn.execute(text(
                "UPDATE messages SET next_attempt_at = :now, held_by = NULL WHERE state = 'queued' AND held_by = :k "
                "AND (tenant, account_id) IN (SELECT * FROM unnest(CAST(:ts AS text[]), CAST(:ids AS text[])))"),
                {"now": now, "k": TOKEN_UNREADABLE, "ts": [r.tenant for r in lifted],
                 "ids": [r.account_id for r in lifted]})
        return SecuredTokens(encrypted, rotated, unreadable, total=len(rows), from_dev_key=from_dev,
                             readable_again=len(lifted))

    async def announce(self, conn: AsyncConnection, now: datetime) -> int:
        """Write `account.registered` for accounts never announced (rows of earlier releases), so ingest
        learns which tenant owns each number; the number announced."""
        rows = (await conn.execute(text(
            f"SELECT {_COLUMNS} FROM accounts WHERE announced_at IS NULL ORDER BY tenant, account_id "
            "FOR UPDATE SKIP LOCKED"))).all()
        if not rows:
            return 0
        await enqueue(conn, [account_event("registered", r.tenant, dict(r._mapping), now) for r in rows])
        await conn.execute(text(
            "UPDATE accounts SET announced_at = :now WHERE (tenant, account_id) IN "
            "(SELECT * FROM unnest(CAST(:ts AS text[]), CAST(:ids AS text[])))"),
            {"now": now, "ts": [r.tenant for r in rows], "ids": [r.account_id for r in rows]})
        return len(rows)


def token_digest(token: str) -> str:
    """The sha256 (hex) of an access token: what the bootstrap remembers of the environment's token."""
    return hashlib.sha256(token.encode()).hexdigest()


def merged(row: Mapping[str, Any], changes: Mapping[str, Any]) -> tuple[AccountPolicy, datetime]:
    """The policy and `registered_at` a row would have with `changes` applied (for validation)."""
    policy = replace(policy_of(row), **{k: v for k, v in changes.items() if k in POLICY_FIELDS})
    return policy, changes.get("registered_at", row["registered_at"])


async def prepare(engine: AsyncEngine, repository: AccountRepository, *, tenant: str, bootstrap: NewAccount | None,
                  now: datetime) -> None:
    """What the sender does with accounts at start, each step in its own transaction: encrypt plain tokens
    and rotate old ones (`secure_tokens`), add or refresh the bootstrap account (`bootstrap`), announce
    accounts never announced (`announce`). Logs what it did — never a token."""
    async with engine.begin() as conn:
        secured = await repository.secure_tokens(conn, now)
    log.info("access tokens at rest: %d accounts; %d encrypted now, %d re-encrypted under the first key of "
             "SCRM_SECRETS_KEY (%d from the built-in development key); %d left not under the first key",
             secured.total, secured.encrypted, secured.rotated, secured.from_dev_key, secured.left)
    if secured.readable_again:
        log.info("access tokens readable again: %d accounts' TOKEN_UNREADABLE restriction lifted",
                 secured.readable_again)
    for owner, account_id in secured.unreadable:
        log.error("no key of SCRM_SECRETS_KEY decrypts the access token of account %s: its messages wait until "
                  "PATCH /v1/accounts/%s sets the token again", account_id, account_id, extra={"tenant": owner})
    if bootstrap is not None:
        async with engine.begin() as conn:
            outcome = await repository.bootstrap(conn, tenant, bootstrap, now)
        log.info("bootstrap account %s of tenant %s: %s", bootstrap.account_id, tenant, outcome)
    async with engine.begin() as conn:
        announced = await repository.announce(conn, now)
    if announced:
        log.info("announced %d accounts of earlier releases (account.registered)", announced)
