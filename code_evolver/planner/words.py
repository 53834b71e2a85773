"""Plain word comparison for the plan checks (``quality``): no model, no dictionary.

Words are lower-cased with accents dropped, so "Écris" and "ecris" are one word; word forms
match by a shared prefix ("poem"/"poems", "summary"/"summarize"), and a few task words match
across languages ("traduce" is "translate"). The stopwords and the language markers cover only
English, French, Spanish and German basics: enough to find the words that carry a request's
topic and to notice when a step is written in another language than the request.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from code_evolver.planner.languages import LANGUAGES, canonical

OTHER_SCRIPT = "other"
"""``language_of`` for text with words outside a-z that no marker names (Chinese, Russian...)."""


def word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


STOPWORDS = word_set(
    # English
    "a an the and or but of to in on at for with about into from by as is are be it its this "
    "that these those them they their then than so also me my i you your we our us please can "
    "could would will some any each every one all just not no do what how which who there here "
    # French
    "le la les un une des du de et ou en au aux sur pour avec dans par ce cet cette ces il elle "
    "est sont puis aussi moi mon ma mes nous vous qui que plait svp "
    # Spanish
    "el los las una unos unas del al y sobre por para con es son esta este esto luego tambien "
    "mi mis su sus favor "
    # German
    "der die das den dem des ein eine einen einem einer und oder zu zum zur im ins am an auf "
    "aus fur uber mit von ist sind dann auch mir mich mein meine bitte diesen diese dieses sie"
)
INSTRUCTION_VERBS = word_set(
    "write tell give make create generate compose produce draft provide come up "
    "ecris ecrire escribe escribir escriba schreibe schreib schreiben"
)
"""Verbs any writing step shares with any writing request: they say nothing about the topic."""

_MARKERS = {
    "en": word_set("the and of to is it with about this that then please what how an into"),
    "fr": word_set("le les une des du sur et puis pour avec est cette au aux dans moi"),
    "es": word_set("el los las una del sobre y luego para con esta este al por unos"),
    "de": word_set("der die das ein eine einen und dann fur mit ist diesen ins uber zu"),
}
"""Function words frequent in one language only: enough to tell which of four a text is in."""

_FAMILIES = {"translate": ("transl", "tradu", "ubersetz"), "summarize": ("summar", "resum")}
"""Task words across languages, under one name each."""

_FOREIGN_LANGUAGE_NAMES = word_set(
    "anglais ingles englisch francais frances franzosisch espagnol espanol allemand aleman "
    "deutsch italien italiano portugais portugues japonais japones chinois chino russe ruso"
)
_LANGUAGE_PREFIXES = frozenset(n[:5] for n in LANGUAGES | _FOREIGN_LANGUAGE_NAMES if len(n) >= 5)
_STEP_ID = re.compile(r"step\d+")


def split_words(text: str) -> tuple[str, ...]:
    """The words of ``text``: lower-cased, accents dropped, task words under their family's
    name; single letters and step ids left out."""
    plain = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return tuple(
        _family(word)
        for word in re.findall(r"[^\W_]+", plain)
        if (len(word) > 1 or word.isdigit()) and not _STEP_ID.fullmatch(word)
    )


def is_content(token: str) -> bool:
    """Whether a word can say what a text is about (not a stopword or a writing verb)."""
    return token not in STOPWORDS and token not in INSTRUCTION_VERBS


def content_words(words: Iterable[str]) -> tuple[str, ...]:
    return tuple(w for w in words if is_content(w))


def same_word(a: str, b: str) -> bool:
    """The same word or word form: "poem"/"poems", "summary"/"summarize", "cat"/"cats".

    Loose on purpose: the checks use a match to stay silent, so a false match costs a missed
    problem, never a good plan rejected.
    """
    if a == b:
        return True
    short, long = sorted((a, b), key=len)
    return (len(short) >= 3 and long.startswith(short)) or (len(short) >= 4 and a[:4] == b[:4])


def contains(words: Sequence[str], run: Sequence[str]) -> bool:
    """Whether ``run`` appears in ``words`` as consecutive words (word forms matching)."""
    n = len(run)
    return any(
        all(same_word(w, r) for w, r in zip(words[i : i + n], run, strict=True))
        for i in range(len(words) - n + 1)
    )


def is_language_name(token: str) -> bool:
    """ "french", "francais", "franzosische", "englischen": a language, in one of four languages."""
    return (
        token in LANGUAGES
        or token in _FOREIGN_LANGUAGE_NAMES
        or token[:5] in _LANGUAGE_PREFIXES
        or canonical(token) is not None
    )


def language_of(words: Sequence[str]) -> str | None:
    """ "en", "fr", "es" or "de" by the most marker words; else ``OTHER_SCRIPT`` for words
    outside a-z; else None (Latin script, language unknown, or a tie)."""
    scores = sorted((sum(w in m for w in words), lang) for lang, m in _MARKERS.items())
    (second, _), (best, language) = scores[-2], scores[-1]
    if best > second:
        return language
    return OTHER_SCRIPT if any(not w.isascii() for w in words) else None


def _family(word: str) -> str:
    for name, prefixes in _FAMILIES.items():
        if word.startswith(prefixes):
            return name
    return word
