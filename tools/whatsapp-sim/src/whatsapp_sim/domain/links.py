"""Which links of a received message a simulated customer may click, and where the click goes (issue 9).

Pure functions: no clock, no randomness, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

# A tracked short link or a resume link as ingest serves them (R-R4): `http(s)://host[:port][/prefix]/l/<code>`
# or `/r/<token>`; the code is base62, the resume token URL-safe (itsdangerous: letters, digits, `-_.`).
SHORT_LINK = re.compile(
    r"https?://[^\s/]+(?:/[^\s]*?)?/(?:l/[A-Za-z0-9]+|r/[A-Za-z0-9_.\-]*[A-Za-z0-9_\-])"
    r"(?=$|[\s),;!?\"'<>]|\.(?:\s|$))"
)


def texts_of(parameters: list[str] | Mapping[str, str] | None, *more: Iterable[str] | Mapping[str, str]) -> list[str]:
    """The text values of a template's parameters (a positional list or a named mapping) and any further
    parameter groups (header, buttons), in order."""
    out: list[str] = []
    for group in (parameters, *more):
        if group is None:
            continue
        values = group.values() if isinstance(group, Mapping) else group
        out.extend(v for v in values if isinstance(v, str))
    return out


def short_links(texts: Iterable[str]) -> list[str]:
    """Every short link (`…/l/<code>`) or resume link (`…/r/<token>`) in `texts`, deduplicated, in order of
    first appearance. A sentence's final full stop is not part of the link."""
    seen: dict[str, None] = {}
    for text in texts:
        for match in SHORT_LINK.finditer(text):
            seen.setdefault(match.group(0), None)
    return list(seen)


def rewrite(url: str, public_base_url: str, ingest_url: str) -> str:
    """The URL a click should GET: a link written with the public base URL (`SCRM_PUBLIC_BASE_URL`, e.g. a
    domain that only resolves outside) is sent to ingest directly (`SCRM_INGEST_URL`), keeping its path and
    query; a link under any other base, or when the two bases are equal or one is empty, is left as it is.

    `public_base_url` may carry a path prefix (`https://s.example/go`); the prefix is replaced by ingest's."""
    public, ingest = public_base_url.strip().rstrip("/"), ingest_url.strip().rstrip("/")
    if not public or not ingest or public == ingest:
        return url
    if url != public and not url.startswith(public + "/"):
        return url
    rest = url[len(public):]
    scheme, netloc, path, query, _ = urlsplit(ingest + rest)
    return urlunsplit((scheme, netloc, path, query, ""))
