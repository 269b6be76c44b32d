"""R-S6 opt-out: recognise an inbound message that *is* a stop (or start) word, and answer it.

Only the whole message counts: "STOP", " stopp! ", "Arrêter 🛑" are opt-outs; "stop sending the
wrong size" is a complaint and is not (CLOUD-API §9: match STOP/UNSUBSCRIBE-style keywords yourself).

Normalisation (``normalise``): Unicode NFKC, casefold, accents removed (NFKD, combining marks
dropped; the letters NFKD does not decompose — Turkish dotless ı, Polish ł, Danish/Norwegian ø —
mapped to their base letter), every character that is neither a letter nor a digit (punctuation,
symbols, emoji, whitespace) stripped from both ends, inner whitespace and hyphens collapsed to one
space. The table below is written in that normal form.

The keyword table, one row per language (stop words | start words). A word may appear in several
languages' rows (STOP is understood everywhere) but never as both stop and start — checked at import.

=====  =====================================================================  ===========================
lang   stop                                                                   start
=====  =====================================================================  ===========================
en     stop, stop all, stop promotions, unsubscribe, opt out, optout, end,    start, subscribe, resume,
       quit                                                                   unstop, opt in, optin
de     stopp, stop, abmelden, abbestellen, austragen, keine werbung           start, starten, anmelden
es     baja, parar, alto, detener, darme de baja, cancelar suscripcion        alta, empezar, suscribir
pt     parar, pare, sair, descadastrar, cancelar inscricao                    iniciar, voltar, inscrever
fr     arret, arreter, stop, desabonner, se desabonner, desinscrire           demarrer, reprendre, abonner
it     basta, stop, disiscrivimi, cancellami, annulla iscrizione              iscrivimi, riprendi, avvia
nl     stoppen, stop, afmelden, uitschrijven                                  aanmelden, starten
tr     dur, durdur, iptal, abonelikten cik, abonelik iptal                    basla, abone ol
pl     stop, wypisz, wypisz mnie, rezygnuje, rezygnacja                       zapisz, wznow, zapisz mnie
=====  =====================================================================  ===========================

Deliberately NOT stop words: "cancel" / "cancelar" / "annulla" on their own — after an order
confirmation they usually mean the order, and the sender cannot tell; "no" / "nein" (answers to a
question). Adding a word is a one-line change to ``KEYWORDS``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final, Literal

Intent = Literal["stop", "start"]

# language -> (stop words, start words), already in the normal form of ``normalise``
KEYWORDS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "en": (
        ("stop", "stop all", "stop promotions", "unsubscribe", "opt out", "optout", "end", "quit"),
        ("start", "subscribe", "resume", "unstop", "opt in", "optin"),
    ),
    "de": (
        ("stopp", "stop", "abmelden", "abbestellen", "austragen", "keine werbung"),
        ("start", "starten", "anmelden"),
    ),
    "es": (
        ("baja", "parar", "alto", "detener", "darme de baja", "cancelar suscripcion"),
        ("alta", "empezar", "suscribir"),
    ),
    "pt": (
        ("parar", "pare", "sair", "descadastrar", "cancelar inscricao"),
        ("iniciar", "voltar", "inscrever"),
    ),
    "fr": (
        ("arret", "arreter", "stop", "desabonner", "se desabonner", "desinscrire"),
        ("demarrer", "reprendre", "abonner"),
    ),
    "it": (
        ("basta", "stop", "disiscrivimi", "cancellami", "annulla iscrizione"),
        ("iscrivimi", "riprendi", "avvia"),
    ),
    "nl": (
        ("stoppen", "stop", "afmelden", "uitschrijven"),
        ("aanmelden", "starten"),
    ),
    "tr": (
        ("dur", "durdur", "iptal", "abonelikten cik", "abonelik iptal"),
        ("basla", "abone ol"),
    ),
    "pl": (
        ("stop", "wypisz", "wypisz mnie", "rezygnuje", "rezygnacja"),
        ("zapisz", "wznow", "zapisz mnie"),
    ),
}

# letters NFKD leaves whole; mapped so "ÇIK", "WZNÓW", "REZYGNUJĘ", "wyłącz" match their ASCII row
_UNDECOMPOSED: Final = str.maketrans({"ı": "i", "ł": "l", "ø": "o", "đ": "d", "ħ": "h"})
_INNER_SPACE: Final = re.compile(r"[\s\-‐‑‒–—_]+")


def _is_word_char(char: str) -> bool:
    return unicodedata.category(char)[0] in ("L", "N")


def normalise(text: str) -> str:
    """The normal form used for matching (see the module docstring): casefolded, accents removed,
    non-letter/digit characters stripped from both ends, inner whitespace/hyphen runs → one space."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFKD", folded)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).translate(_UNDECOMPOSED)
    start, end = 0, len(plain)
    while start < end and not _is_word_char(plain[start]):
        start += 1
    while end > start and not _is_word_char(plain[end - 1]):
        end -= 1
    return _INNER_SPACE.sub(" ", plain[start:end]).strip()


def _build_index() -> dict[str, Intent]:
    index: dict[str, Intent] = {}
    for language, (stops, starts) in KEYWORDS.items():
        pairs: tuple[tuple[Intent, tuple[str, ...]], ...] = (("stop", stops), ("start", starts))
        for intent, words in pairs:
            for word in words:
                if normalise(word) != word:
                    raise ValueError(f"opt-out table: {language} {word!r} is not in normal form")
                if index.setdefault(word, intent) != intent:
                    raise ValueError(f"opt-out table: {word!r} is both a stop and a start word")
    return index


_INDEX: Final[dict[str, Intent]] = _build_index()


def stop_intent(text: str) -> Intent | None:
    """R-S6: ``"stop"`` when the whole inbound ``text`` is a stop word of any language in
    ``KEYWORDS``, ``"start"`` when it is a start (resume) word, else ``None`` (a sentence that merely
    contains one — "stop sending the wrong size" — is ``None``). Never raises."""
    return _INDEX.get(normalise(text))


CONFIRMATIONS: Final[dict[str, dict[Intent, str]]] = {
    "en": {
        "stop": "You will no longer receive promotional messages from us. Reply START to subscribe again.",
        "start": "You are subscribed to our promotional messages again. Reply STOP to unsubscribe.",
    },
    "de": {
        "stop": "Sie erhalten keine Werbenachrichten mehr von uns. Antworten Sie START, um sie wieder zu erhalten.",
        "start": "Sie erhalten wieder Werbenachrichten von uns. Antworten Sie STOPP zum Abmelden.",
    },
    "es": {
        "stop": "Ya no recibirás mensajes promocionales nuestros. Responde ALTA para volver a suscribirte.",
        "start": "Vuelves a recibir nuestros mensajes promocionales. Responde BAJA para darte de baja.",
    },
    "pt": {
        "stop": "Você não receberá mais mensagens promocionais nossas. Responda INICIAR para voltar a recebê-las.",
        "start": "Você voltará a receber nossas mensagens promocionais. Responda PARAR para cancelar.",
    },
    "fr": {
        "stop": "Vous ne recevrez plus nos messages promotionnels. Répondez DEMARRER pour vous réabonner.",
        "start": "Vous recevez à nouveau nos messages promotionnels. Répondez STOP pour vous désabonner.",
    },
    "it": {
        "stop": "Non riceverai più i nostri messaggi promozionali. Rispondi ISCRIVIMI per riceverli di nuovo.",
        "start": "Riceverai di nuovo i nostri messaggi promozionali. Rispondi STOP per annullare l'iscrizione.",
    },
    "nl": {
        "stop": "U ontvangt geen promotieberichten meer van ons. Antwoord AANMELDEN om ze weer te ontvangen.",
        "start": "U ontvangt weer promotieberichten van ons. Antwoord STOP om u af te melden.",
    },
    "tr": {
        "stop": "Artık bizden tanıtım mesajları almayacaksınız. Tekrar abone olmak için BASLA yazın.",
        "start": "Tanıtım mesajlarımızı yeniden alacaksınız. Aboneliği bırakmak için DUR yazın.",
    },
    "pl": {
        "stop": "Nie będziesz już otrzymywać od nas wiadomości promocyjnych. Odpisz ZAPISZ, aby je przywrócić.",
        "start": "Znowu będziesz otrzymywać nasze wiadomości promocyjne. Odpisz STOP, aby się wypisać.",
    },
}


def confirmation(language: str | None, intent: Intent) -> str:
    """The short free-form confirmation for ``intent`` in ``language`` (a BCP 47 / WhatsApp tag such
    as ``"de"``, ``"de-DE"`` or ``"pt_BR"``; only the primary subtag is used, case-insensitively);
    English when the language is ``None``, empty or not in ``CONFIRMATIONS``."""
    primary = re.split(r"[-_]", (language or "").strip().casefold(), maxsplit=1)[0]
    return CONFIRMATIONS.get(primary, CONFIRMATIONS["en"])[intent]
