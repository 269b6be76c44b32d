"""The `wa_id` WhatsApp answers for a number, as the real Cloud API does (CLOUD-API.md §1).

The simulator answers `contacts[0].wa_id`, addresses its status webhooks (`recipient_id`) and sends
its customers' messages (`from`) with this id, so a platform that stores the shop's number must
learn the mapping from the send response:

| number sent to                                                  | wa_id                   |
|-----------------------------------------------------------------|-------------------------|
| Mexico `+52` + 10 digits                                        | `521` + the 10 digits   |
| Brazil `+55` DD `9` + 8-digit mobile, configured as "old" (an   | `55` DD + the 8 digits  |
| account registered before the 9th digit was added)              |                         |
| anything else                                                   | its digits              |

Which Brazilian mobiles are "old" is configuration (`SCRM_SIMULATOR_BR_LEGACY_NUMBERS`: empty for
none, `*` for every Brazilian mobile, or a comma-separated list of numbers), so runs are repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass

_MEXICO = "52"
_BRAZIL = "55"


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


@dataclass(frozen=True, slots=True)
class WaIdRules:
    """How numbers become WhatsApp ids: `br_legacy_all` or the digits in `br_legacy` keep 8-digit ids."""

    br_legacy_all: bool = False
    br_legacy: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, spec: str) -> WaIdRules:
        """`""` (none), `"*"` (every Brazilian mobile) or `"+55 11 91234-5678, 5521987654321"`.

        Raises ValueError for an entry that is not a 9-digit Brazilian mobile.
        """
        spec = spec.strip()
        if spec == "*":
            return cls(br_legacy_all=True)
        numbers = set()
        for raw in (part.strip() for part in spec.split(",")):
            if not raw:
                continue
            digits = _digits(raw)
            if not _is_br_nine_digit_mobile(digits):
                raise ValueError(f"{raw!r} is not a Brazilian mobile with 9 digits (+55 DD 9XXXX-XXXX)")
            numbers.add(digits)
        return cls(br_legacy=frozenset(numbers))

    def wa_id_for(self, digits: str) -> str:
        """The wa_id WhatsApp uses for the number with these digits (see the table above)."""
        if digits.startswith(_MEXICO) and len(digits) == 12:
            return "521" + digits[2:]
        if _is_br_nine_digit_mobile(digits) and (self.br_legacy_all or digits in self.br_legacy):
            return digits[:4] + digits[5:]
        return digits


def _is_br_nine_digit_mobile(digits: str) -> bool:
    """`55` DD `9` + 8 digits starting 6–9: a mobile that had its 9th digit added."""
    return digits.startswith(_BRAZIL) and len(digits) == 13 and digits[4] == "9" and digits[5] in "6789"
