"""Text as a customer reads it: no control or direction-override characters, folded whitespace,
no template braces, and shortening that never splits a grapheme cluster (an emoji sequence, a flag).

Grapheme clusters come from the `regex` library's `\\X` (Unicode UAX #29 extended clusters).
"""

from __future__ import annotations

import re

import regex

# Bidirectional embeddings, overrides and isolates (LRE RLE PDF LRO RLO, LRI RLI FSI PDI): an unclosed
# one in a parameter reorders the template's own text after it, so no parameter may carry one.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Invisible marks that have no business in a name: LRM, RLM, ALM, zero-width space, word joiner and
# the invisible operators, BOM, soft hyphen, Mongolian vowel separator. (ZWJ and ZWNJ stay: emoji
# sequences and Persian or Indic spelling need them.)
INVISIBLE_MARKS = frozenset("\u200e\u200f\u061c\u200b\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e")

_GRAPHEME = regex.compile(r"\X")
_OPEN_RUN = re.compile(r"\{(?=\{)")
_CLOSE_RUN = re.compile(r"\}(?=\})")


# Controls that separate words (tab, line feed, vertical tab, form feed, carriage return, the
# information separators, next line) become spaces; every other C0/C1 control, a lone surrogate and
# the bidi controls are dropped.
_SPACING_CONTROLS = re.compile("[\t\n\x0b\x0c\r\x1c-\x1f\x85]")
_DROPPED = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\ud800-\udfff" + "".join(sorted(BIDI_CONTROLS)) + "]")
_DROPPED_WITH_MARKS = re.compile(_DROPPED.pattern[:-1] + "".join(sorted(INVISIBLE_MARKS)) + "]")


def strip_controls(text: str, *, marks: bool = False) -> str:
    """`text` without control characters (Unicode Cc), lone surrogates (Cs) and bidi embeddings,
    overrides and isolates; with `marks`, also without the invisible marks of INVISIBLE_MARKS.
    Controls that separate words (tab, newline …) become spaces, so the words stay apart."""
    if text.isascii() and text.isprintable():
        return text  # the everyday case: nothing to strip
    spaced = _SPACING_CONTROLS.sub(" ", text)
    return (_DROPPED_WITH_MARKS if marks else _DROPPED).sub("", spaced)


def fold_whitespace(text: str) -> str:
    """Every run of Unicode whitespace (newline, tab, no-break space, line separator …) as one space,
    none at the ends: Meta refuses a parameter with a newline, a tab or more than 4 spaces in a row."""
    return " ".join(text.split())


def defuse_braces(text: str) -> str:
    """No `{{` or `}}` left (a space between each pair of braces), so text is never read as a template
    variable: `{{{name}}}` → `{ { {name} } }`."""
    return _CLOSE_RUN.sub("} ", _OPEN_RUN.sub("{ ", text))


def clean_text(text: str, *, marks: bool = False) -> str:
    """Text safe as one line of a message: controls stripped, whitespace folded, braces defused."""
    return defuse_braces(fold_whitespace(strip_controls(text, marks=marks)))


def graphemes(text: str) -> list[str]:
    """The user-perceived characters of `text` (extended grapheme clusters), in order."""
    return list(_GRAPHEME.findall(text))


def shorten(text: str, limit: int, *, ellipsis: str = "…") -> str:
    """`text` if it has at most `limit` characters (code points), else as many whole grapheme clusters
    as fit before `ellipsis` within `limit`; never cuts inside a cluster. `limit` < 1 gives ""."""
    if len(text) <= limit:
        return text
    if limit < 1:
        return ""
    room = limit - len(ellipsis)
    kept: list[str] = []
    used = 0
    for cluster in graphemes(text):
        if used + len(cluster) > room:
            break
        kept.append(cluster)
        used += len(cluster)
    head = "".join(kept).rstrip()
    return head + ellipsis if len(head) + len(ellipsis) <= limit else head
