"""Opaque identifiers shaped like Meta's: wamids and fbtrace ids."""

from __future__ import annotations

import base64
import random
import string

_TRACE_ALPHABET = string.ascii_letters + string.digits + "-_"


def new_wamid(rng: random.Random, wa_id: str) -> str:
    """A wamid laid out like Meta's: base64 of a small protobuf carrying the number and a random id."""
    number = wa_id.encode()[:127]
    token = f"{rng.getrandbits(72):018X}".encode()
    raw = b"\x1c\x18" + bytes([len(number)]) + number + b"\x15\x02\x00\x11\x18" + bytes([len(token)])
    return "wamid." + base64.b64encode(raw + token + b"\x00").decode()


def new_fbtrace_id(rng: random.Random) -> str:
    """A random 23-character trace id, as in `error.fbtrace_id`."""
    return "".join(rng.choice(_TRACE_ALPHABET) for _ in range(23))


def new_hex_id(rng: random.Random, length: int = 32) -> str:
    """A random lowercase hex id (conversation ids)."""
    return f"{rng.getrandbits(4 * length):0{length}x}"
