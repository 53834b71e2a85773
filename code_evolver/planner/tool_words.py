"""Which tool a clause needs, by its words: the first tool word in it, unless a writing verb
leads ("write a story about sorting algorithms" is not a sort) or a light verb leaves it to the
rest ("make it all caps"). Where no word decides, the writer stands in and the clause is
marked uncertain, for a model to choose among :data:`CHOICES`.
"""

from __future__ import annotations

import re

from code_evolver.planner.clause_words import STRONG_WRITERS
from code_evolver.planner.clauses import Clause
from code_evolver.planner.languages import canonical, find_languages

WRITER, TRANSLATOR, SUMMARIZER, COMBINE = "content_generator", "translator", "summarizer", "combine"

_LANGUAGE_WORDS = r"[^\W\d_]+(?:\s*(?:,|and|&|et|y|und|e)\s*[^\W\d_]+)*"
_ARTICLE = r"(?:(?:o|a|el|la|le|het|de|the|os|das|ins)\s+)?"
INTO_LANGUAGE = re.compile(
    rf"\b(?:in|into|to|en|al|ins|auf|nach|naar|para|per)\s+{_ARTICLE}(?P<languages>[^\W\d_]+"
    rf"(?:\s*(?:,|/|and|&|et|y|und|e|en|or)\s*(?:(?:in|into|en|al|naar|para|to)\s+)?{_ARTICLE}"
    r"[^\W\d_]+)*)(?:\s+(?:please|too|as\s+well))?[\s?!.]*$",
    re.I,
)
"""Where a clause names the languages it wants, at its end: "... into German and French"."""
_LIGHT = re.compile(
    r"^(?:render|put|convert|turn|rewrite|say|give|make|get|have|show|what'?s|what\s+is|"
    r"how\s+do\s+(?:you|i)\s+say)\b",
    re.I,
)
TOOL_WORDS: tuple[tuple[str, str], ...] = (
    ("delay", r"\b(?:wait|pause|sleep|warte|attends|espera)\b"),
    (
        "word_count",
        r"\b(?:count|how\s+many|number\s+of|total)\b[^.]*?\bwords?\b|\bword[- ]?count\b"
        r"|\bcuent\w*\s+las\s+palabras|\bcompt\w*\s+les\s+mots|\bz[äa]hl\w*[^.]*w[öo]rter"
        r"|\bcu[áa]ntas\s+palabras|\bcombien\s+de\s+mots|\bwie\s+viele\s+w[öo]rter"
        r"|\bquante\s+parole|\bquantas\s+palavras|\btel\b[^.]*\bwoorden\b",
    ),
    ("line_count", r"\b(?:count|how\s+many|number\s+of)\b[^.]*?\blines?\b|\bline[- ]?count\b"),
    (
        "unique_words",
        r"\b(?:unique|distinct|different)\s+words\b|\bdedupe\w*|\bdeduplicat\w*"
        r"|\bremove\s+(?:the\s+)?duplicate|\bevery\s+word\s+(?:only\s+)?once\b|\bno\s+repeats\b"
        r"|\beach\s+word\s+(?:only\s+)?once\b|\bwithout\s+(?:repeats|duplicates)\b",
    ),
    (
        "upper",
        r"\bupper[- ]?case\w*|\ball[- ]?caps\b|\bin\s+caps\b|\bcapital\s+letters\b|\bshout\w*"
        r"|\bcapitali[sz]e\b|may[úu]sculas|majuscules|gro[ßs]buchstaben|\bcaps\s+lock\b",
    ),
    (
        "sort_lines",
        r"\bsort\w*|\balphabeti[sz]\w*|\balphabetical\w*|\bordena\w*|\btrie[rz]?\b"
        r"|\bin\s+order\b",
    ),
    (
        TRANSLATOR,
        r"\btrans?l\w*at\w*|\btranlsat\w*|\btrad[uú]\w*|\b[üu]bersetz\w*|\bvertaal\w*",
    ),
    (
        SUMMARIZER,
        r"\bsumm?ari[sz]\w*|\bsumerize\b|\bsummar(?:y|ies)\b|\bsum\s+(?:it|this|that|them)\s+up"
        r"|\btl;?\s?dr\b|\br[ée]sum[eé]-?(?:le|la|les)\b|\bres[úu]m\w*|\bresum[aeo]\b"
        r"|\bzusammenfass\w*|\bfass\w*\b[^.]*\bzusammen\b|\briassum\w*|\bcondense\b"
        r"|\bvat\b[^.]*\bsamen\b|\bsamenvat\w*|\bboil\w*\s+(?:\w+\s+){0,3}?down\b"
        r"|\bshorter\s+version\b|\bone[- ]sentence\s+version\b|\brecap\b|\bgist\b",
    ),
    (
        COMBINE,
        r"\b(?:combine|merge|join)\w*|\bput\b[^.]*?\b(?:together|into\s+one|in\s+one|into\s+a"
        r"\s+single|in\s+a\s+single)\b|\b(?:together|side\s+by\s+side)\b|\b(?:one|single)\s+"
        r"(?:document|list|text|section|page)\b|\br[ée]uni\w*|\bcomb[íi]n\w*|\bkombinier\w*"
        r"|\bzusammenf[üu]g\w*|\bf[üu]ge?\b[^.]*\bzusammen\b|\bunisci\w*|\bj[úu]nt\w*|\bstitch\w*|\bun\s+solo\s+texto\b"
        r"|\brassembl\w*|\bmetti\s+insieme\b|\bzusammenstell\w*|\bsamenvoeg\w*"
        r"|\bun\s+seul\s+texte\b|\beinem\s+text\b|\bone\s+after\s+the\s+other\b"
        r"|\bback\s+to\s+back\b",
    ),
)
# A light verb leaves the tool to the rest of the clause ("make it all caps"); a writing verb
# decides it ("write a story about sorting algorithms" is not a sort).
_WRITES = re.compile(rf"^(?:{STRONG_WRITERS})\b(?![^.]*\bsummar(?:y|ies)\s+of\b)", re.I)
NAMED_RESULTS: tuple[tuple[str, str], ...] = (
    ("summary", r"\b(?:the|its|both|all|these|those)\s+(?:summar(?:y|ies)|tl;?dr|tldr)\b"
                r"|\ble\s+r[ée]sum[ée]\b"
                r"|\bthe\s+(?:gist|recap)\b(?!\s+(?:of|in\s+(?:one|a|two|three|\d))\b)"
                r"|\bel\s+resumen\b|\bdie\s+zusammenfassung\b|\bil\s+riassunto\b"),
    ("translation", r"\b(?:the|both|all|these)\s+(?:\w+\s+)?translations?\b"
                    r"|\bthe\s+translated\s+\w+|\b(?:la|les)\s+traductions?\b"
                    r"|\b(?:la|las)\s+traducci(?:[óo]n|ones)\b|\b(?:a|as)\s+tradu[çc](?:[ãa]o|[õo]es)\b"
                    r"|\b(?:les|las|le|die|i|de)\s+(?:deux|dos|zwei|beiden|due|twee)\s+"
                    r"(?:tradu\w+|[üu]bersetzung\w*|vertaling\w*)"
                    r"|\b(?:le|i)\s+(?:due\s+)?traduzion[ei]\b"
                    r"|\bdie\s+[üu]bersetzung\w*"),
    ("original", r"\bthe\s+original\b|\bl'original\w*\b|\bel\s+original\b|\bdas\s+original\b"
                 r"|\bhet\s+origineel\b|\bo\s+original\b"),
    ("combined", r"\bthe\s+(?:combined|merged|joined)\s+\w+"),
)  # fmt: skip


CHOICES = (
    WRITER,
    SUMMARIZER,
    TRANSLATOR,
    "word_count",
    "line_count",
    "upper",
    "sort_lines",
    "unique_words",
)


def tool_for(clause: Clause) -> tuple[str, bool]:
    """The clause's tool by its words, and whether the words were certain."""
    text = without_references(clause.text)
    if _WRITES.match(text) and not re.match(r"^(?:list|name)\s+the\s+(?:unique|distinct)", text):
        return WRITER, True
    found = [
        (match.start(), tool)
        for tool, pattern in TOOL_WORDS
        if (match := re.search(pattern, text, re.I)) is not None
    ]
    named = re.search(r"\b([^\W\d_]+)\s+(?:version|translation)\b", text)
    if named and canonical(named.group(1)):  # "an Italian version"
        found.append((named.start(), TRANSLATOR))
    into = INTO_LANGUAGE.search(text)
    if into and find_languages(into["languages"]) and (into.start() == 0 or _LIGHT.match(text)):
        found.append((into.start(), TRANSLATOR))  # "put it into German", "in German please"
    if found:
        return min(found)[1], True
    if clause.source is not None and not _WRITES.match(text):
        return WRITER, False  # text to work on, but no word says how
    return WRITER, True


def without_references(text: str) -> str:
    for _, pattern in NAMED_RESULTS:
        text = re.sub(pattern, " the result ", text, flags=re.I)
    return " ".join(text.split())
