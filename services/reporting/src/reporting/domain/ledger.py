"""Which stored message each status belongs to: one row per message, whatever wamid each attempt got.

A status carrying the send's idempotency key belongs to the row of that key (R-S7: the 24 h retry has
the same key and a new wamid). A status without one (an agent app's message on a shared number, or a
status Meta sent without echoing `biz_opaque_callback_data`) belongs to the row that knows its wamid,
or starts a row of its own, kept apart until the platform claims the wamid. Rows found to be one
message — a kept-apart row claimed by its key, or two rows of one key written before this rule — are
combined into one and the others deleted, so each message counts once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from reporting.domain.messages import Message, StatusSeen, combine, first_status

MessageRef = tuple[str, str]  # (tenant, row key)
Name = tuple[str, str]  # (tenant, idempotency key or wamid)


@dataclass(frozen=True, slots=True)
class MessageLookup:
    """The rows a batch of statuses may touch: by row key, by idempotency key, by any wamid."""

    keys: frozenset[MessageRef] = frozenset()
    idempotency_keys: frozenset[Name] = frozenset()
    wamids: frozenset[Name] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.keys or self.idempotency_keys or self.wamids)


def lookup_for(statuses: list[tuple[str, StatusSeen]]) -> MessageLookup:
    """What to load before recording `statuses` (every row `Ledger.record` could pick)."""
    return MessageLookup(
        keys=frozenset((t, s.key) for t, s in statuses),
        idempotency_keys=frozenset((t, s.idempotency_key) for t, s in statuses if s.idempotency_key),
        wamids=frozenset((t, s.message_id) for t, s in statuses if s.message_id))


@dataclass
class Ledger:
    """The message rows a batch touches, changed in memory as statuses are recorded.

    Must start with every row `lookup_for(statuses)` finds; `deleted` lists rows combined into another.
    """

    messages: dict[MessageRef, Message]
    deleted: set[MessageRef] = field(default_factory=set)
    _moved: dict[MessageRef, MessageRef] = field(default_factory=dict)
    _by_key: dict[Name, set[MessageRef]] = field(default_factory=lambda: defaultdict(set))
    _by_wamid: dict[Name, set[MessageRef]] = field(default_factory=lambda: defaultdict(set))

    def __post_init__(self) -> None:
        self.messages = dict(self.messages)
        for ref, m in self.messages.items():
            self._index(ref, m)

    def record(self, tenant: str, seen: StatusSeen) -> MessageRef:
        """Apply one status to its message (combining rows found to be that message); return its row."""
        found = self._rows(tenant, seen)
        if not found:
            ref = (tenant, seen.key)
            self._put(ref, first_status(seen))
            return ref
        keep, *others = found
        message = self.messages[keep]
        for other in others:
            message = combine(message, self._drop(other))
            self._moved[other] = keep
        self._put(keep, combine(message, first_status(seen)))
        return keep

    def row(self, ref: MessageRef) -> MessageRef:
        """Where the message recorded at `ref` is now (rows combined later in the batch move it)."""
        while ref not in self.messages and ref in self._moved:
            ref = self._moved[ref]
        return ref

    def _rows(self, tenant: str, seen: StatusSeen) -> list[MessageRef]:
        """The rows that are `seen`'s message, the one to keep first; never two of different keys."""
        key = seen.idempotency_key
        refs = set(self._by_key.get((tenant, key), ())) if key else set()
        if seen.message_id:
            refs |= self._by_wamid.get((tenant, seen.message_id), set())
        if (tenant, seen.key) in self.messages:
            refs.add((tenant, seen.key))
        ordered = sorted(refs, key=lambda r: (self.messages[r].idempotency_key != key if key else False,
                                              self.messages[r].idempotency_key is None,
                                              not self.messages[r].platform, r))
        if not ordered:
            return []
        kept = self.messages[ordered[0]].idempotency_key
        return [r for r in ordered if self.messages[r].idempotency_key in (None, kept)]

    def _put(self, ref: MessageRef, message: Message) -> None:
        if ref in self.messages:
            self._unindex(ref, self.messages[ref])
        self.deleted.discard(ref)  # a key combined away earlier in the batch may start a row again
        self.messages[ref] = message
        self._index(ref, message)

    def _drop(self, ref: MessageRef) -> Message:
        message = self.messages.pop(ref)
        self._unindex(ref, message)
        self.deleted.add(ref)
        return message

    def _index(self, ref: MessageRef, m: Message) -> None:
        if m.idempotency_key:
            self._by_key[(ref[0], m.idempotency_key)].add(ref)
        for wamid in m.wamids:
            self._by_wamid[(ref[0], wamid)].add(ref)

    def _unindex(self, ref: MessageRef, m: Message) -> None:
        if m.idempotency_key:
            self._by_key[(ref[0], m.idempotency_key)].discard(ref)
        for wamid in m.wamids:
            self._by_wamid[(ref[0], wamid)].discard(ref)
