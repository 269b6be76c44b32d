"""R-T1.2 / R-T1.4: the first name to greet with is never a title, a surname, shouting caps or hidden
characters, and when it is not sure the greeting is the generic one."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from trigger_engine.domain.names import first_name
from trigger_engine.domain.text import BIDI_CONTROLS, INVISIBLE_MARKS, graphemes

from .test_text import FAMILY, FLAG_DE, SCOTLAND


@pytest.mark.parametrize(("name", "first"), [
    # the examples
    ("Dr. Maria Schmidt", "Maria"),
    # a given name written all in lowercase is capitalised, like shouting caps
    ("Mrs. jane DOE", "Jane"), ("jane Doe", "Jane"), ("herr jörg MEIER", "Jörg"), ("anne-marie Lefèvre", "Anne-Marie"),
    ("Jane doe", "Jane"), ("McKenzie Smith", "McKenzie"),
    ("MÜLLER, ANNA", "Anna"),
    # honorifics in the shops' languages
    ("Herr Hans Müller", "Hans"), ("Frau Anna Weber", "Anna"), ("Frau Prof. Dr. Eva Klein", "Eva"),
    ("Prof. Dr. med. Hans Meier", "Hans"), ("Dipl.-Ing. Jörg Weber", "Jörg"), ("Mag. Eva Gruber", "Eva"),
    ("Mr John Smith", "John"), ("Mrs. Jane Doe", "Jane"), ("Ms Ada Lovelace", "Ada"), ("Mx Sam Lee", "Sam"),
    ("Mme Claire Dubois", "Claire"), ("M. Jean Dupont", "Jean"), ("Mlle Léa Martin", "Léa"),
    ("Sr. Juan Pérez", "Juan"), ("Sra. Ana López", "Ana"), ("Srta. Lucía Gómez", "Lucía"),
    ("Dra. Carmen Ruiz", "Carmen"),
    ("Dott. Marco Rossi", "Marco"), ("Dott.ssa Giulia Bianchi", "Giulia"), ("Sig.ra Paola Verdi", "Paola"),
    ("Mevr. Anke de Vries", "Anke"), ("Dhr. Jan de Vries", "Jan"),
    # "Last, First", with particles and titles
    ("Schmidt, Anna", "Anna"), ("van der Berg, Jan", "Jan"), ("de la Cruz, María", "María"),
    ("Schmidt, Dr. Maria", "Maria"), ("O'NEIL, SEAN", "Sean"),
    # shouting or whispered caps; names keep their own spelling otherwise
    ("ANNA SCHMIDT", "Anna"), ("ANNA-LENA MEYER", "Anna-Lena"), ("JOSÉ GARCÍA", "José"), ("anna schmidt", "Anna"),
    ("Anna", "Anna"), ("  Anna   Schmidt ", "Anna"), ("José María García", "José"), ("Jean-Luc Picard", "Jean-Luc"),
    ("McKenzie Brown", "McKenzie"), ("Иван Петров", "Иван"), ("王 伟", "伟"),
    # decoration and hidden characters are not part of the name
    ("🦄 Lucky", "Lucky"), ("Anna 🌸", "Anna"), ("\u202eAnna\u202c Schmidt", "Anna"), ("\u2066Maria\u2069", "Maria"),
    ("Anna\u200f", "Anna"), ("\x00Anna\x07 Weber", "Anna"), ("Anna\nSchmidt", "Anna"), ("\ufeffAnna", "Anna"),
])
def test_first_name_is_the_given_name(name, first):
    assert first_name(name) == first


@pytest.mark.parametrize("name", [
    None, "", "   ", "Herr Müller", "Frau Dr.", "Mr Smith", "Dr.", "Herr", "J. R. Tolkien", "A. Schmidt",
    "Kunde", "null", "N/A", "Guest", "{{first_name}}", "%FNAME%", "123", "🦄", "-", "...", "\u202e\u202c",
    # companies: a legal form means the generic greeting
    "ACME GmbH", "Müller & Söhne GmbH & Co. KG", "Widget Ltd.", "Smith Holdings LLC", "Initech Inc", "Bäckerei Kraus e.K.",
    "Dupont SARL", "Construcciones García S.A.", "Schmidt AG", "Start UG (haftungsbeschränkt)", "acme gmbh",
])
def test_no_sure_first_name_falls_back_to_the_generic_greeting(name):
    assert first_name(name) is None


def test_a_long_first_name_is_shortened_at_a_grapheme_boundary():
    assert first_name("Wolfeschlegelsteinhausenbergerdorff Senior", limit=12) == "Wolfeschleg…"
    assert first_name("Zoe" + FLAG_DE + FLAG_DE + " Smith", limit=7) == "Zoe" + FLAG_DE + FLAG_DE
    assert first_name("Zoe" + FLAG_DE + FLAG_DE + " Smith", limit=6) == "Zoe" + FLAG_DE + "…"
    assert first_name("Zoe" + FLAG_DE + FLAG_DE + " Smith", limit=5) == "Zoe…"  # never half a flag
    assert first_name("Rene\u0301elle Dupont", limit=6) == "Rene\u0301…"
    assert first_name("Rene\u0301elle Dupont", limit=5) == "Ren…"  # never a letter without its accent


def _forbidden(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cs") or ch in BIDI_CONTROLS or ch in INVISIBLE_MARKS


@given(st.text(max_size=80))
@example("\u202eDr. Anna\u2069 Schmidt")
@example("MÜLLER,\x00 ANNA\u200e")
def test_a_first_name_never_contains_a_control_or_bidi_character(name):
    first = first_name(name)
    assert first is None or (first and not any(_forbidden(ch) for ch in first))


# Given names of ASCII letters and emoji clusters: the parser may change a letter's case, never a cluster.
_words = st.lists(st.sampled_from(["Ana", "x", "Bo", FAMILY, FLAG_DE, SCOTLAND, "👍🏽", "e\u0301"]),
                  max_size=12).map(lambda parts: "Ana" + "".join(parts))


@given(word=_words, limit=st.integers(min_value=1, max_value=24))
@example(word="Ana" + FAMILY + FLAG_DE, limit=5)
def test_a_first_name_never_splits_an_emoji_sequence_or_flag(word, limit):
    first = first_name(f"{word} Schmidt", limit=limit)
    if first is None:
        return
    assert len(first) <= limit
    kept = [g.lower() for g in graphemes(first.removesuffix("…"))]
    assert kept == [g.lower() for g in graphemes(word)][: len(kept)]
