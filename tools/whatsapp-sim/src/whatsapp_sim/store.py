"""Process-local memory of what the simulator saw: messages, rejections, inbound traffic, counters."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from whatsapp_sim.domain.outcomes import STATUS_RANK
from whatsapp_sim.domain.validation import AcceptedMessage


def iso(ts: float) -> str:
    """Unix seconds as ISO-8601 UTC with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


@dataclass(slots=True)
class MessageRecord:
    """One accepted send and the latest status webhook emitted for it."""

    seq: int
    wamid: str
    phone_number_id: str
    message: AcceptedMessage
    received_at: float
    status: str = "accepted"
    error_code: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form for `/_sim/messages`."""
        template = self.message.template
        return {
            "seq": self.seq,
            "wamid": self.wamid,
            "phone_number_id": self.phone_number_id,
            "to": self.message.to,
            "wa_id": self.message.wa_id,
            "type": self.message.type,
            "template": template.to_dict() if template else None,
            "text": self.message.text,
            "biz_opaque_callback_data": self.message.biz_opaque_callback_data,
            "context_message_id": self.message.context_message_id,
            "received_at": iso(self.received_at),
            "status": self.status,
            "error_code": self.error_code,
        }


@dataclass(slots=True)
class Stats:
    """Counters since start or the last reset."""

    accepted: int = 0
    accepted_by_type: Counter[str] = field(default_factory=Counter)
    rejected: Counter[int] = field(default_factory=Counter)
    read_receipts: int = 0
    inbound: int = 0
    statuses: Counter[str] = field(default_factory=Counter)


class SimStore:
    """Accepted messages (the last `cap`), rejections and inbound messages, all in memory."""

    def __init__(self, cap: int = 200_000, rejection_cap: int = 10_000) -> None:
        self._cap = cap
        self._messages: deque[MessageRecord] = deque()
        self._by_wamid: dict[str, MessageRecord] = {}
        self._rejections: deque[dict[str, Any]] = deque(maxlen=rejection_cap)
        self._inbound: deque[dict[str, Any]] = deque(maxlen=rejection_cap)
        self._inbound_ids: dict[str, str] = {}
        self._seq = 0
        self.stats = Stats()

    def add(self, wamid: str, phone_number_id: str, message: AcceptedMessage, at: float) -> MessageRecord:
        """Remember an accepted message (evicting the oldest beyond the cap)."""
        self._seq += 1
        record = MessageRecord(self._seq, wamid, phone_number_id, message, at)
        self._messages.append(record)
        self._by_wamid[wamid] = record
        while len(self._messages) > self._cap:
            old = self._messages.popleft()
            self._by_wamid.pop(old.wamid, None)
        self.stats.accepted += 1
        self.stats.accepted_by_type[message.type] += 1
        return record

    def get(self, wamid: str) -> MessageRecord | None:
        """The record of a wamid still in memory."""
        return self._by_wamid.get(wamid)

    def mark(self, wamid: str, status: str, error_code: int | None = None) -> None:
        """Advance a message's status (sent < delivered < read; failed is terminal)."""
        self.stats.statuses[status] += 1
        record = self._by_wamid.get(wamid)
        if record is None or record.status == "failed":
            return
        if STATUS_RANK.get(status, 0) > STATUS_RANK.get(record.status, 0):
            record.status, record.error_code = status, error_code

    def messages(self, *, wa_id: str | None = None, phone_number_id: str | None = None,
                 since_seq: int = 0, limit: int | None = None) -> list[MessageRecord]:
        """Messages with seq > since_seq matching the filters, oldest first."""
        picked: list[MessageRecord] = []
        for record in reversed(self._messages):
            if record.seq <= since_seq:
                break
            if wa_id is not None and record.message.wa_id != wa_id:
                continue
            if phone_number_id is not None and record.phone_number_id != phone_number_id:
                continue
            picked.append(record)
        picked.reverse()
        return picked[:limit] if limit is not None else picked

    def reject(self, entry: dict[str, Any], code: int) -> None:
        """Remember a rejected request."""
        self.stats.rejected[code] += 1
        self._rejections.append(entry)

    def rejections(self) -> list[dict[str, Any]]:
        """The remembered rejections, oldest first."""
        return list(self._rejections)

    def add_inbound(self, phone_number_id: str, wamid: str, entry: dict[str, Any]) -> None:
        """Remember a message a customer sent to a business number."""
        self.stats.inbound += 1
        self._inbound.append(entry)
        self._inbound_ids[wamid] = phone_number_id
        while len(self._inbound_ids) > self._cap:
            del self._inbound_ids[next(iter(self._inbound_ids))]

    def is_inbound(self, phone_number_id: str, wamid: str) -> bool:
        """True when `wamid` is a message received by `phone_number_id`."""
        return self._inbound_ids.get(wamid) == phone_number_id

    def inbound(self) -> list[dict[str, Any]]:
        """The remembered inbound messages, oldest first."""
        return list(self._inbound)

    def __iter__(self) -> Iterator[MessageRecord]:
        return iter(self._messages)

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def last_seq(self) -> int:
        """The seq of the newest accepted message."""
        return self._seq

    def clear(self) -> None:
        """Forget everything (seq keeps counting so pollers never see a seq twice)."""
        self._messages.clear()
        self._by_wamid.clear()
        self._rejections.clear()
        self._inbound.clear()
        self._inbound_ids.clear()
        self.stats = Stats()
