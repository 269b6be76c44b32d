"""Text as customers read it: control and bidi characters stripped, whitespace folded, braces defused,
and shortening that never splits a grapheme cluster (emoji ZWJ sequences, flags, combining marks)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from trigger_engine.domain.text import BIDI_CONTROLS, INVISIBLE_MARKS, clean_text, graphemes, shorten

FAMILY = "👨\u200d👩\u200d👧\u200d👦"  # one cluster of 7 code points
FLAG_DE, FLAG_FR = "🇩🇪", "🇫🇷"  # two regional indicators each
SCOTLAND = "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"  # a tag sequence
E_ACUTE = "e\u0301"  # e + combining acute
CLUSTERS = [FAMILY, FLAG_DE, FLAG_FR, SCOTLAND, E_ACUTE, "👍🏽", "❤️", "a", "Z", " ", "ß", "한"]

# Text built from whole clusters, the kind a name or product name may hold.
cluster_text = st.lists(st.sampled_from(CLUSTERS), max_size=30).map("".join)
any_text = st.one_of(cluster_text, st.text(max_size=60))


@pytest.mark.parametrize(("text", "limit", "short"), [
    ("Anna", 10, "Anna"),
    ("Anna", 4, "Anna"),
    ("Annabelle", 5, "Anna…"),
    ("ab" + FAMILY, 8, "ab…"),  # the family emoji does not fit whole: it is left out, not cut
    ("ab" + FAMILY, 9, "ab" + FAMILY),
    ("ab" + FAMILY + "c", 9, "ab…"),
    ("ab" + FAMILY + "cd", 10, "ab" + FAMILY + "…"),
    (FLAG_DE + FLAG_FR, 4, FLAG_DE + FLAG_FR),
    (FLAG_DE + FLAG_FR, 3, FLAG_DE + "…"),
    (FLAG_DE + FLAG_FR, 2, "…"),
    ("Jose" + E_ACUTE + "phine", 6, "Jose…"),  # é is two code points and stays whole
    ("Jose" + E_ACUTE + "phine", 7, "Jose" + E_ACUTE + "…"),
    ("Anna Schmidt", 6, "Anna…"),  # no dangling space before the ellipsis
    ("Anna", 0, ""),
])
def test_shorten_cuts_between_grapheme_clusters_only(text, limit, short):
    assert shorten(text, limit) == short


@given(text=any_text, limit=st.integers(min_value=1, max_value=40))
@example(text="ab" + FAMILY + "cd", limit=8)
@example(text=FLAG_DE * 5, limit=4)
def test_shorten_never_splits_a_grapheme_and_never_exceeds_its_limit(text, limit):
    short = shorten(text, limit)
    assert len(short) <= limit
    if len(text) <= limit:
        assert short == text
        return
    assert short.endswith("…")
    kept = graphemes(short.removesuffix("…"))
    assert kept == graphemes(text)[: len(kept)], "the kept text is whole clusters of the original, in order"


@pytest.mark.parametrize(("raw", "clean"), [
    ("Sneaker\nLimited", "Sneaker Limited"),
    ("a\r\n\tb", "a b"),
    ("a     b", "a b"),
    ("a\u00a0\u00a0\u00a0\u00a0\u00a0b", "a b"),  # no-break spaces fold as well
    ("a\u2028b\u2029c", "a b c"),
    ("  padded  ", "padded"),
    ("{{1}}", "{ {1} }"),
    ("{{{name}}}", "{ { {name} } }"),
    ("{single}", "{single}"),
    ("\u202eevil\u202c", "evil"),
    ("\u2066iso\u2069late", "isolate"),
    ("bell\x07\x00", "bell"),
    ("lone\ud800surrogate", "lonesurrogate"),
    ("rtl\u200fmark", "rtl\u200fmark"),  # a mark cannot reorder what follows: kept in ordinary text
    (FAMILY + " " + FLAG_DE, FAMILY + " " + FLAG_DE),  # ZWJ sequences and flags survive
])
def test_clean_text_table(raw, clean):
    assert clean_text(raw) == clean


def test_names_also_lose_invisible_marks():
    assert clean_text("An\u200bna\u200f \ufeffSchmidt\u00ad", marks=True) == "Anna Schmidt"


def _forbidden(ch: str, *, marks: bool) -> bool:
    return (unicodedata.category(ch) in ("Cc", "Cs") or ch in BIDI_CONTROLS
            or (marks and ch in INVISIBLE_MARKS))


@given(text=st.text(max_size=80), marks=st.booleans())
@example(text="\u202e\n{{x}}\t     y\u2069", marks=False)
def test_clean_text_never_contains_a_control_bidi_newline_or_template_brace(text, marks):
    clean = clean_text(text, marks=marks)
    assert not any(_forbidden(ch, marks=marks) for ch in clean)
    assert "{{" not in clean and "}}" not in clean
    assert "  " not in clean and clean == clean.strip()
    assert clean_text(clean, marks=marks) == clean
