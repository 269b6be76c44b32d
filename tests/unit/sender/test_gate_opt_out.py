"""R-S6: the whole inbound message is a stop/start word (normalised), and the reply confirms it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sender.domain.gate.opt_out import CONFIRMATIONS, KEYWORDS, confirmation, normalise, stop_intent

LANGUAGES = ("de", "en", "es", "pt", "fr", "it", "nl", "tr", "pl")
STOP_WORDS = sorted({w for stops, _ in KEYWORDS.values() for w in stops})
START_WORDS = sorted({w for _, starts in KEYWORDS.values() for w in starts})

CASES = [
    # (message as a contact might type it, expected intent)
    ("STOP", "stop"),
    ("stop", "stop"),
    ("  Stop.  ", "stop"),
    ("STOPP!", "stop"),
    ("Abmelden", "stop"),
    ("UNSUBSCRIBE", "stop"),
    ("opt-out", "stop"),
    ("BAJA", "stop"),
    ("¡Baja!", "stop"),
    ("parar", "stop"),
    ("Darme de baja", "stop"),
    ("ARRÊT", "stop"),
    ("Arrêter 🛑", "stop"),
    ("désabonner", "stop"),
    ("Basta!!!", "stop"),
    ("stoppen", "stop"),
    ("AFMELDEN", "stop"),
    ("Dur", "stop"),
    ("İPTAL", "stop"),
    ("ABONELİKTEN ÇIK", "stop"),
    ("abonelikten   çık", "stop"),
    ("WYPISZ", "stop"),
    ("REZYGNUJĘ", "stop"),
    ("Descadastrar", "stop"),
    ("\u00a0stop\u200b", "stop"),
    ("ＳＴＯＰ", "stop"),  # full-width letters (NFKC)
    ("START", "start"),
    ("Anmelden", "start"),
    ("ALTA", "start"),
    ("subscribe!", "start"),
    ("wznów", "start"),
    ("Başla", "start"),
    ("démarrer", "start"),
    # complaints, questions and words inside a sentence are not opt-outs
    ("stop sending the wrong size", None),
    ("Please STOP", None),
    ("stop?? where is my order", None),
    ("Ich möchte mich abmelden", None),
    ("cancel", None),
    ("Cancel my order", None),
    ("stopped", None),
    ("nonstop", None),
    ("", None),
    ("   ", None),
    ("🛑", None),
    ("!!!", None),
    ("thanks", None),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[repr(c[0]) for c in CASES])
def test_stop_intent(text: str, expected: str | None) -> None:
    assert stop_intent(text) == expected


def test_every_language_has_stop_and_start_words() -> None:
    for language in LANGUAGES:
        stops, starts = KEYWORDS[language]
        assert stops and starts, language


def test_no_word_is_both_stop_and_start_and_the_table_is_normalised() -> None:
    assert not set(STOP_WORDS) & set(START_WORDS)
    for word in STOP_WORDS + START_WORDS:
        assert normalise(word) == word


@pytest.mark.parametrize("language", LANGUAGES)
def test_confirmation_in_each_language_names_the_word_that_undoes_it(language: str) -> None:
    stop_text = confirmation(language, "stop")
    start_text = confirmation(language, "start")
    assert stop_text != start_text
    if language != "en":
        assert stop_text != CONFIRMATIONS["en"]["stop"]
    # each confirmation quotes (in capitals) a word that reverses it, and that word really works
    for text, undo in ((stop_text, "start"), (start_text, "stop")):
        quoted = [w for w in text.replace(",", " ").replace(".", " ").split() if len(w) > 2 and w.isupper()]
        assert quoted, text
        assert any(stop_intent(w) == undo for w in quoted), (language, text)


@pytest.mark.parametrize(
    ("language", "expected_language"),
    [("de-DE", "de"), ("pt_BR", "pt"), ("FR", "fr"), (" it ", "it"), ("ja", "en"), ("", "en"), (None, "en")],
)
def test_confirmation_language_tags_and_english_fallback(language: str | None, expected_language: str) -> None:
    for intent in ("stop", "start"):
        assert confirmation(language, intent) == CONFIRMATIONS[expected_language][intent]


# --- properties -------------------------------------------------------------------------------------

_WRAP = st.text(alphabet=" \t\n\u00a0.,;:!?¡¿\"'()[]*-_~…🛑✋🙏😡👍", max_size=6)
_GAP = st.text(alphabet=" \t\u00a0", min_size=1, max_size=3)


@st.composite
def _disguised(draw: st.DrawFn, words: list[str]) -> tuple[str, str]:
    word = draw(st.sampled_from(words))
    cased = "".join(c.upper() if draw(st.booleans()) else c for c in word)
    inner = "".join(draw(_GAP) if c == " " else c for c in cased)
    return word, draw(_WRAP) + inner + draw(_WRAP)


@given(_disguised(STOP_WORDS))
def test_any_stop_word_in_any_case_and_wrapping_is_stop(case: tuple[str, str]) -> None:
    word, text = case
    assert stop_intent(text) == "stop", (word, text)


@given(_disguised(START_WORDS))
def test_any_start_word_in_any_case_and_wrapping_is_start(case: tuple[str, str]) -> None:
    word, text = case
    assert stop_intent(text) == "start", (word, text)


# words that appear in no keyword phrase, so adding them never forms another keyword
_FILLER = st.sampled_from(["sending", "the", "wrong", "size", "please", "bitte", "pedido", "order", "42", "now"])


@given(st.sampled_from(STOP_WORDS), st.lists(_FILLER, min_size=1, max_size=5), st.integers(min_value=0, max_value=5))
def test_a_sentence_longer_than_the_stop_phrase_is_not_an_opt_out(word: str, extra: list[str], at: int) -> None:
    words = extra[:]
    words.insert(min(at, len(words)), word)
    sentence = " ".join(words)
    assert stop_intent(sentence) is None, sentence
    assert stop_intent(sentence.upper() + "!") is None, sentence
