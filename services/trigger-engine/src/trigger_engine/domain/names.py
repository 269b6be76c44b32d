"""A contact's first name to greet with (R-T1.2, R-T1.4): never a title, a surname or a placeholder.

Parsing is nameparser's (titles, "Last, First", particles, shouting caps); this module adds the
honorifics of the shops' languages that its vocabulary lacks and the rules for giving up. Giving up
means None, and the flow falls back to its generic greeting.
"""

from __future__ import annotations

from nameparser import Lexicon, Parser

from trigger_engine.domain.text import clean_text, shorten

# Honorifics by language, as shops write them before a name (with or without the full stop). Most
# are in nameparser's own vocabulary already; the table is the documented list we rely on, and
# every entry is added so none depends on a library release. "Don"/"Dona" are left out: they are
# common first names in English and Portuguese, where greeting "Don" is right.
HONORIFICS: dict[str, tuple[str, ...]] = {
    "de": ("herr", "frau", "fräulein", "frl", "hr", "fr", "dr", "prof", "dipl", "ing", "mag"),
    "en": ("mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "lady", "lord"),
    "fr": ("m", "mme", "mlle", "monsieur", "madame", "mademoiselle", "me", "pr"),
    "es": ("sr", "sra", "srta", "dra", "lic", "ing"),
    "it": ("sig", "sigra", "signor", "signora", "signorina", "dott", "dottssa", "avv", "arch", "prof"),
    "pt": ("sr", "sra", "srta", "dra", "eng"),
    "nl": ("dhr", "mevr", "mw"),
}

_PARSER = Parser(lexicon=Lexicon.default().add(
    titles=sorted({title for titles in HONORIFICS.values() for title in titles})))

# Merge-tag syntaxes of other tools and null-like values that shops export instead of a name.
_MERGE_TAG_CHARS = frozenset("{}[]<>%*|$#@\\")
_NOT_NAMES = frozenset({
    "null", "none", "nil", "undefined", "n/a", "na", "unknown", "customer", "kunde", "test", "name", "firstname",
    "first_name", "vorname", "guest", "gast",
})
MAX_FIRST_NAME_CHARS = 40
# Legal forms of companies, compared without dots, case or brackets ("S.A." → "sa", "e.K." → "ek"): a
# name carrying one is a company's ("ACME GmbH", "Smith & Sons Ltd."), and a company gets the generic greeting.
COMPANY_FORMS = frozenset({
    "gmbh", "mbh", "ag", "kg", "kgaa", "ohg", "gbr", "ug", "ek", "ev", "eg", "se",  # de
    "ltd", "limited", "llc", "llp", "lp", "plc", "inc", "incorporated", "corp", "corporation", "co",  # en
    "sarl", "sas", "sasu", "sa", "eurl", "sca",  # fr
    "srl", "spa", "sl", "slu", "sau", "ltda", "sc",  # it, es, pt
    "bv", "nv", "vof",  # nl
    "oy", "oyj", "ab", "asa", "aps",  # nordic
})


def first_name(name: str | None, *, limit: int = MAX_FIRST_NAME_CHARS) -> str | None:
    """The given name to greet `name` with, or None when there is nothing sure to greet.

    "Dr. Maria Schmidt" → "Maria"; "MÜLLER, ANNA" → "Anna" (shouting caps title-cased, "Last, First");
    "Herr Müller" → None (a title and a surname only); "Mrs. jane DOE" → "Jane" (an all-lowercase
    given name is capitalised too); "ACME GmbH" → None (a company's legal form, see COMPANY_FORMS).
    Control and bidi characters are stripped;
    a long name is shortened at a grapheme-cluster boundary to at most `limit` characters.
    """
    if not name:
        return None
    text = clean_text(name, marks=True)
    if not text or _MERGE_TAG_CHARS & set(text) or text.lower() in _NOT_NAMES:
        return None
    # Words without a letter (an emoji, a number) are decoration, not names: "🦄 Lucky" is Lucky.
    words = " ".join(word for word in text.split() if any(ch.isalpha() for ch in word))
    if not words:
        return None
    if any("".join(ch for ch in word.casefold() if ch.isalnum()) in COMPANY_FORMS for word in words.split()):
        return None
    parsed = _PARSER.capitalized(_PARSER.parse(words))
    given = parsed.given.split()[0] if parsed.given else ""
    if given.islower():
        # nameparser capitalises only a name written wholly in one case; "Mrs. jane DOE" greets "Jane".
        given = _PARSER.capitalized(_PARSER.parse(given)).given or given
    letters = [ch for ch in given if ch.isalpha()]
    if not letters or given.lower().strip(".") in _NOT_NAMES:
        return None
    if len(letters) == 1 and letters[0].lower() != letters[0].upper():
        return None  # an initial ("J.") is not a name to greet with (an uncased 伟 is a name)
    return shorten(given, limit)
