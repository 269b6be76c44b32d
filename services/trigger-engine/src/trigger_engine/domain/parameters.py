"""Template parameters the Cloud API accepts (CLOUD-API.md §2.4), applied to every Send of every flow.

Meta refuses a body parameter with a newline, a tab or more than four consecutive spaces, and a
filled body over 1024 characters; a parameter with `{{` would be read as a variable (R-S2). So each
parameter is cleaned to one line and the whole is kept within the body limit before a command is
written: a product name with a line break never fails a confirmation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from trigger_engine.domain.text import clean_text, shorten

_URL = re.compile(r"^https?://\S+$")


@dataclass(frozen=True, slots=True)
class ParameterRules:
    """Limits on a template's body parameters, in characters (code points)."""

    max_parameter_chars: int = 1024  # one parameter: the send command's own limit
    max_body_chars: int = 1024  # Meta: the filled body
    template_text_chars: int = 160  # the longest catalog template's own text, without its variables


class UnsendableParameters(ValueError):
    """The parameters cannot be made acceptable: one is empty once cleaned, or the links alone do not
    fit the body limit. The message is the reason recorded for not sending."""


def clean_parameters(parameters: Sequence[str], rules: ParameterRules) -> tuple[str, ...]:
    """Each parameter as one clean line (no control or bidi-override character, whitespace folded to
    single spaces, no template braces), at most `max_parameter_chars` long, and all of them within
    what the body limit leaves beside the template's text. When they do not fit, the longest
    parameter that is not a link is shortened (at a grapheme boundary, with an ellipsis) until they
    do; links are never cut. Raises UnsendableParameters when a parameter is empty once cleaned (R-S2:
    never a blank variable) or the links alone do not fit.
    """
    cleaned = [shorten(clean_text(p), rules.max_parameter_chars) for p in parameters]
    empty = [str(i) for i, p in enumerate(cleaned, start=1) if not p]
    if empty:
        raise UnsendableParameters(f"template parameter {', '.join(empty)} is empty once cleaned of "
                                   "control characters and whitespace")
    budget = rules.max_body_chars - rules.template_text_chars
    while (excess := sum(map(len, cleaned)) - budget) > 0:
        cuttable = [i for i, p in enumerate(cleaned) if len(p) > 1 and not _URL.match(p)]
        if not cuttable:
            raise UnsendableParameters(
                f"template parameters need {sum(map(len, cleaned))} characters, the body leaves {budget}")
        longest = max(cuttable, key=lambda i: len(cleaned[i]))
        cleaned[longest] = shorten(cleaned[longest], max(1, len(cleaned[longest]) - excess))
    return tuple(cleaned)
