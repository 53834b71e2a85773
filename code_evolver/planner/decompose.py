"""From clauses to a plan: a tool for each clause and the earlier steps it reads.

The tool comes from the clause's words (``translate`` / ``traduis`` / ``übersetze`` -> the
translator, ``count the words`` -> ``word_count``, ``put them together`` -> ``combine``, any
other instruction -> the writer). What a clause reads comes from its references: ``it`` and
``the result`` read the clause before, ``them`` / ``both`` every result not yet used, ``the
summary`` / ``the translation`` / ``the original`` the step that made it; a transform (translate,
summarize, count, ...) with no text of its own reads the clause before.

When the words decide nothing, :func:`decompose_choosing` asks for a *choice*, not a plan:
the tool of one clause, from the tools that fit (``choose``, a model under an enum grammar),
or none where the rules are certain. A request the rules cannot read (nothing to translate, a
reference to nothing) is :class:`NotDecomposable`, with the reason, for the caller to fall
back on.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from code_evolver.plan import Plan
from code_evolver.planner.clauses import (
    GENERATE_VERBS,
    GENRES,
    STARTS_INSTRUCTION,
    STRONG_WRITERS,
    Clause,
    split_request,
)
from code_evolver.planner.languages import find_languages
from code_evolver.templating import escape

WRITER, TRANSLATOR, SUMMARIZER, COMBINE = "content_generator", "translator", "summarizer", "combine"
MAX_ITEMS = 12
Chooser = Callable[[Clause, Sequence[str]], Awaitable[str]]

_LANGUAGE_WORDS = r"[^\W\d_]+(?:\s*(?:,|and|&|et|y|und|e)\s*[^\W\d_]+)*"
_INTO_LANGUAGE = re.compile(
    r"\b(?:in|into|to|en|al|ins|auf|nach|in\s+the)\s+(?P<languages>[^\W\d_]+(?:\s*(?:,|and|&|et|"
    r"y|und|e|or)\s*(?:(?:in|into|en|al)\s+)?[^\W\d_]+)*)(?:\s+(?:please|too|as\s+well))?[\s?!.]*$",
    re.I,
)
_LIGHT = re.compile(r"^(?:render|put|convert|turn|rewrite|say|give|make|get|have|show)\b", re.I)
_TOOL_WORDS: tuple[tuple[str, str], ...] = (
    ("delay", r"\b(?:wait|pause|sleep|warte|attends|espera)\b"),
    (
        "word_count",
        r"\b(?:count|how\s+many|number\s+of|total)\b[^.]*?\bwords?\b|\bword[- ]?count\b"
        r"|\bcuent\w*\s+las\s+palabras|\bcompt\w*\s+les\s+mots|\bz[äa]hl\w*[^.]*w[öo]rter"
        r"|\bcu[áa]ntas\s+palabras|\bcombien\s+de\s+mots|\bwie\s+viele\s+w[öo]rter"
        r"|\bquante\s+parole|\bquantas\s+palavras",
    ),
    ("line_count", r"\b(?:count|how\s+many|number\s+of)\b[^.]*?\blines?\b|\bline[- ]?count\b"),
    ("unique_words", r"\b(?:unique|distinct|different)\s+words\b"),
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
        r"\btrans?l\w*at\w*|\btranlsat\w*|\btradu\w*|\b[üu]bersetz\w*",
    ),
    (
        SUMMARIZER,
        r"\bsumm?ari[sz]\w*|\bsumerize\b|\bsummar(?:y|ies)\b|\bsum\s+(?:it|this|that|them)\s+up"
        r"|\btl;?\s?dr\b|\br[ée]sum[eé]-?(?:le|la|les)\b|\bres[úu]m\w*|\bresum[aeo]\b"
        r"|\bzusammenfass\w*|\bfass\w*\b[^.]*\bzusammen\b|\briassum\w*|\bcondense\b"
        r"|\bshorter\s+version\b|\bone[- ]sentence\s+version\b|\brecap\b|\bgist\b",
    ),
    (
        COMBINE,
        r"\b(?:combine|merge|join)\w*|\bput\b[^.]*?\b(?:together|into\s+one|in\s+one|into\s+a"
        r"\s+single|in\s+a\s+single)\b|\b(?:together|side\s+by\s+side)\b|\b(?:one|single)\s+"
        r"(?:document|list|text|section|page)\b|\br[ée]uni\w*|\bcomb[íi]n\w*|\bkombinier\w*"
        r"|\bzusammenf[üu]g\w*|\bunisci\b|\bj[úu]nt\w*|\bstitch\w*|\bun\s+solo\s+texto\b"
        r"|\bun\s+seul\s+texte\b|\beinem\s+text\b",
    ),
)
# A light verb leaves the tool to the rest of the clause ("make it all caps"); a writing verb
# decides it ("write a story about sorting algorithms" is not a sort).
_WRITES = re.compile(rf"^(?:{STRONG_WRITERS})\b(?![^.]*\bsummar(?:y|ies)\s+of\b)", re.I)
_NOUN_REFS: tuple[tuple[str, str], ...] = (
    ("summary", r"\b(?:the|its)\s+(?:summar(?:y|ies)|tl;?dr|tldr)\b|\ble\s+r[ée]sum[ée]\b"
                r"|\bel\s+resumen\b|\bdie\s+zusammenfassung\b|\bil\s+riassunto\b"),
    ("translation", r"\b(?:the|both|all|these)\s+(?:\w+\s+)?translations?\b"
                    r"|\bthe\s+translated\s+\w+|\b(?:la|les)\s+traductions?\b"
                    r"|\b(?:la|las)\s+traducci(?:[óo]n|ones)\b|\b(?:a|as)\s+tradu[çc](?:[ãa]o|[õo]es)\b"
                    r"|\bdie\s+[üu]bersetzung\w*"),
    ("original", r"\bthe\s+original\b|\bl'original\b|\bel\s+original\b|\bdas\s+original\b"),
)  # fmt: skip
_PLURAL = re.compile(
    r"\b(?:them|both|all|these|those|they|their|each|every|les|los|las|beide\w*|sie|ambos|"
    r"ambas|tous|toutes|todos|todas|alle|the\s+two|os\s+dois|los\s+dos|les\s+deux|"
    r"die\s+beiden|i\s+due)\b|\w+-les\b|\w+(?:los|las)\b(?=\s|$)",
    re.I,
)
_CHOOSES = re.compile(
    r"^(?:pick|choose|select|rank|rate|compare|which|decide|elige|escoge|choisis|w[äa]hle|"
    r"compara|compare|scegli|vergleiche)\b",
    re.I,
)
_EVERYTHING = re.compile(r"\b(?:everything|all\s+of\s+(?:it|this)|all\s+the\s+results)\b", re.I)
_EACH = re.compile(r"\b(?:each|every|cada|chaque|jede\w*|ogni)\b", re.I)
_SINGULAR = re.compile(
    r"\b(?:it|its|this|that|the\s+(?:result|output|text|above|best|story|poem|joke|list|"
    rf"names?|one|{GENRES})s?|which|based\s+on|le|la|lo|es|ihn)\b|\w+-(?:le|la|lo)\b"
    r"|\w+(?:lo|la)\b(?=\s|$)",
    re.I,
)
_NUMBERS = {
    "a couple of": 2, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "a few": 3, "several": 3, "dos": 2, "tres": 3,
    "cuatro": 4, "cinco": 5, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "zwei": 2,
    "drei": 3, "vier": 4, "fünf": 5, "due": 2, "tre": 3, "duas": 2, "três": 3,
}  # fmt: skip
_NUMBER = rf"(?P<n>\d+|{'|'.join(sorted(_NUMBERS, key=len, reverse=True))})"
_ABOUT = (
    r"about|on|for|of|against|featuring|sobre|sur|über|ueber|su|de|pour|para|für|contra|contre|"
    r"gegen"
)
_COUNTED = re.compile(
    rf"^(?P<verb>.*?)\b{_NUMBER}\s+(?P<thing>(?:[\w'-]+\s+){{0,3}}?[\w'-]+?)"
    rf"(?:\s+(?P<prep>{_ABOUT})\s+(?P<topics>.+))?$",
    re.I,
)
_FOR_EACH = re.compile(
    r"^(?:for|para|pour|für)\s+(?:each|every|cada\s+un[oa]|chacun\w*|jede\w*)\s+(?:of\s+)?"
    r"(?:(?:these|the\s+following|those)\s+\w+\s*)?[-:–—]?\s*(?P<items>.+)\s*[-:–—,]\s*"
    rf"(?P<rest>(?:{GENERATE_VERBS})\b.+)$",
    re.I,
)
_FOR_EACH_ALONE = re.compile(
    r"^(?:for|para|pour|für)\s+(?:each|every|cada|chaque|jede\w*)\s+(?:of\s+)?[^,]+(?:,[^,]+)*$",
    re.I,
)
_EACH_OF_THESE = re.compile(
    r"\b(?:each|every|all)\s+of\s+(?:these|the\s+following|those)(?:\s+\w+)?\s*$"
    r"|\bciascun[oa]\s+di\s+quest\w+(?:\s+\w+)?\s*$|\bcada\s+un[oa]\s+de\s+est\w+(?:\s+\w+)?\s*$"
    r"|\bchacun\w*\s+de\s+ces(?:\s+\w+)?\s*$",
    re.I,
)
_SEASONS = ("spring", "summer", "autumn", "winter")


class NotDecomposable(ValueError):
    """The rules cannot read this request; the message says why (shown if nothing else works)."""


class MissingText(NotDecomposable):
    """The request asks to work on text it does not give: no planner can make that up."""


@dataclass
class _Built:
    steps: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[list[str]] = field(default_factory=list)
    """The step ids each clause produced, by clause."""
    tools: list[str] = field(default_factory=list)
    """The tool of each clause."""
    used: set[str] = field(default_factory=set)

    def add(
        self,
        tool: str,
        text: str,
        description: str,
        reads: Sequence[str] = (),
        params: dict[str, Any] | None = None,
    ) -> str:
        step_id = f"step{len(self.steps) + 1}"
        step: dict[str, Any] = {
            "step_id": step_id,
            "description": description,
            "tool": tool,
            "input": text,
            "depends_on": list(reads),
        }
        if params:
            step["params"] = params
        self.steps.append(step)
        self.used.update(reads)
        return step_id

    def leaves(self) -> list[str]:
        return [s["step_id"] for s in self.steps if s["step_id"] not in self.used]


@dataclass(frozen=True)
class Decomposition:
    plan: Plan
    clauses: tuple[Clause, ...]
    """The request's parts (after items were expanded): the bound on a model's plan too."""
    uncertain: tuple[int, ...] = ()
    """Clauses whose tool no word decided (the writer stands in until something chooses)."""
    understood: bool = True
    """Every clause is an instruction the rules know (a verb they know, an item, a transform
    with its text): a stronger model is not needed to read the request."""
    choices: int = 0
    """How many choices a model made."""


def decompose(
    request: str, tools: Collection[str], chosen: Mapping[int, str] | None = None
) -> Decomposition:
    """The plan of ``request`` by the rules; ``chosen`` settles uncertain clauses' tools.

    Raises :class:`NotDecomposable` when the rules cannot make a plan that can run.
    """
    clauses = expand_items(split_request(request).clauses)
    if not clauses:
        raise NotDecomposable("the request has no instruction")
    chosen = chosen or {}
    built, uncertain = _Built(), []
    for index, clause in enumerate(clauses):
        tool, certain = tool_for(clause)
        if index in chosen:
            tool = chosen[index]
        elif not certain:
            uncertain.append(index)
        _add(built, clauses, index, tool)
    missing = sorted({s["tool"] for s in built.steps} - set(tools))
    if missing:
        raise NotDecomposable(f"the plan needs tools that are not configured: {missing}")
    if len(built.steps) > MAX_ITEMS * 2:
        raise NotDecomposable(f"the request makes {len(built.steps)} steps; split it up")
    plan = Plan.from_data({"request": request.strip(), "steps": built.steps})
    understood = all(_known(c) for c in clauses)
    return Decomposition(plan, tuple(clauses), tuple(uncertain), understood, len(chosen))


async def decompose_choosing(
    request: str, tools: Collection[str], choose: Chooser
) -> Decomposition:
    """:func:`decompose`, with ``choose`` (a model) asked for each uncertain clause's tool."""
    first = decompose(request, tools)
    if not first.uncertain:
        return first
    options = [t for t in _OPTIONS if t in tools]
    chosen = {i: await choose(first.clauses[i], options) for i in first.uncertain}
    try:
        return decompose(request, tools, chosen)
    except NotDecomposable:  # the choice cannot run (a translation with no language named)
        return first


def rules_plan(request: str, tools: Collection[str]) -> Plan | None:
    """The rules' plan of ``request``, or None when they cannot make one."""
    try:
        return decompose(request, tools).plan
    except NotDecomposable:
        return None


def _known(clause: Clause) -> bool:
    tool, certain = tool_for(clause)
    return certain and (
        STARTS_INSTRUCTION.match(clause.text) is not None
        or clause.item_of is not None
        or clause.joiner == "with"
        or (tool != WRITER and clause.source is not None)
    )


def _add(built: _Built, clauses: Sequence[Clause], index: int, tool: str) -> None:
    clause = clauses[index]
    reads = _reads(built, clauses, index, tool)
    if tool == WRITER:
        built.outputs.append([_writer(built, clause, reads)])
    elif tool == COMBINE:
        if len(reads) < 2 and clause.source is None:
            built.outputs.append([_writer(built, clause, reads)])
            tool = WRITER
        else:
            text = "\n\n".join(f"{{{r}}}" for r in reads) or escape(clause.source or "")
            built.outputs.append([built.add(COMBINE, text, "Combine the results", reads)])
    elif tool == TRANSLATOR:
        built.outputs.append(_translations(built, clause, reads))
    else:
        built.outputs.append(_transform(built, clause, tool, reads))
    built.tools.append(tool)


_OPTIONS = (
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
    text = _without_refs(clause.text)
    if _WRITES.match(text) and not re.match(r"^(?:list|name)\s+the\s+(?:unique|distinct)", text):
        return WRITER, True
    found = [
        (match.start(), tool)
        for tool, pattern in _TOOL_WORDS
        if (match := re.search(pattern, text, re.I)) is not None
    ]
    into = _INTO_LANGUAGE.search(text)
    if into and find_languages(into["languages"]) and (into.start() == 0 or _LIGHT.match(text)):
        found.append((into.start(), TRANSLATOR))  # "put it into German", "in German please"
    if found:
        return min(found)[1], True
    if clause.source is not None and not _WRITES.match(text):
        return WRITER, False  # text to work on, but no word says how
    return WRITER, True


def _without_refs(text: str) -> str:
    for _, pattern in _NOUN_REFS:
        text = re.sub(pattern, " the result ", text, flags=re.I)
    return " ".join(text.split())


def _reads(built: _Built, clauses: Sequence[Clause], index: int, tool: str) -> list[str]:
    """The step ids this clause reads."""
    clause = clauses[index]
    if clause.source is not None or index == 0:
        return []
    text = clause.text
    if clause.joiner == "with" and built.steps:
        return list(built.steps[-1]["depends_on"])
    if clause.item_of is not None and not _PLURAL.search(text):
        return []  # an item's "it" is its topic ("an argument against it")
    named: list[str] = []
    for kind, pattern in _NOUN_REFS:
        if re.search(pattern, text, re.I):
            named += _named(built, kind)
    named += _things_named(built, clauses, index)
    if named:
        return list(dict.fromkeys(named))
    if _EVERYTHING.search(text):
        return [s["step_id"] for s in built.steps]
    plural = _PLURAL.search(text) is not None or _CHOOSES.match(text) is not None
    singular = _SINGULAR.search(text) is not None
    transform = tool != WRITER
    if not (plural or singular or transform or clause.joiner == "then"):
        return []
    if tool == "delay" and clause.joiner != "then":
        return []
    if plural or tool == COMBINE:
        return built.leaves() or built.outputs[-1]
    return built.outputs[-1]


_THE_THING = re.compile(
    r"\bthe\s+(?:(?:two|three|four|five|\d+|other)\s+)?(?P<noun>[a-z]{3,})\b", re.I
)
_WRITTEN = re.compile(rf"(?:{GENRES}|history|draft|piece|article|blurb|ad|verse|chapter)", re.I)
_NOT_THINGS = frozenset(
    {
        "best",
        "one",
        "result",
        "results",
        "output",
        "outputs",
        "text",
        "above",
        "first",
        "second",
        "last",
        "same",
        "whole",
        "other",
        "funniest",
        "shortest",
        "longest",
        "better",
    }
)


def _things_named(built: _Built, clauses: Sequence[Clause], index: int) -> list[str]:
    """``the intro with the three histories``: the steps of the earlier clauses that wrote an
    intro and histories (the noun, singular or plural, in their words)."""
    found: list[str] = []
    for match in _THE_THING.finditer(clauses[index].text):
        noun = _singular(match["noun"].lower())
        if noun in _NOT_THINGS or not _WRITTEN.fullmatch(noun):
            continue  # "the sea" in two clauses is a topic, not a reference
        pattern = re.compile(rf"\b{re.escape(noun)}(?:s|es)?\b", re.I)
        for earlier in range(index):
            if pattern.search(clauses[earlier].text) and earlier < len(built.outputs):
                found += built.outputs[earlier]
    return found


def _named(built: _Built, kind: str) -> list[str]:
    tool = {"summary": SUMMARIZER, "translation": TRANSLATOR}.get(kind)
    if tool is None:  # the original: what the first clause made
        return built.outputs[0] if built.outputs else []
    for outputs, made in zip(reversed(built.outputs), reversed(built.tools), strict=True):
        if made == tool:
            return outputs
    return built.outputs[-1] if built.outputs else []


def _writer(built: _Built, clause: Clause, reads: Sequence[str]) -> str:
    instruction = _sentence(clause.text)
    text = escape(instruction)
    if clause.source is not None:
        text += "\n\n" + escape(clause.source)
    for read in reads:
        text += f"\n\n{{{read}}}"
    return built.add(WRITER, text, _short(clause.text), reads)


_TRANSLATE_TEXT = re.compile(
    r"^(?:please\s+)?translate\s*(?:the\s+(?:text|sentence|phrase|word)s?\s*)?:?\s*"
    r"(?P<text>.+?)\s+(?:in)?to\s+(?P<languages>[^\W\d_]+(?:\s*(?:,|and|&)\s*[^\W\d_]+)*)[\s?!.]*$",
    re.I | re.S,
)
_REFERENCE = re.compile(r"^(?:it|this|that|them|these|those|the\s+\w+|both|each|all)\b", re.I)


def _translations(built: _Built, clause: Clause, reads: Sequence[str]) -> list[str]:
    match = _TRANSLATE_TEXT.match(clause.text) if clause.source is None and not reads else None
    if match and not _REFERENCE.match(match["text"]) and find_languages(match["languages"]):
        clause = Clause(f"translate to {match['languages']}", match["text"], clause.joiner)
    if clause.source is not None and not find_languages(_strip_quotes(clause.text)):
        match = re.search(  # "translate: see you tomorrow to Dutch"
            r"\s+(?:in)?to\s+(?P<languages>[^\W\d_]+(?:\s*(?:,|and|&)\s*"
            r"[^\W\d_]+)*)\s*$",
            clause.source,
        )
        if match and find_languages(match["languages"]):
            clause = Clause(f"translate to {match['languages']}", clause.source[: match.start()])
    languages = find_languages(_strip_quotes(clause.text))
    if not languages:
        raise NotDecomposable(f"which language? {clause.text!r} names none")
    if clause.source is None and not reads:
        raise MissingText(
            f"there is no text to translate in {clause.text!r}: put it in quotes or after a colon"
        )
    made: list[str] = []
    sources = [(f"{{{r}}}", [r]) for r in reads] if reads else [(escape(clause.source or ""), [])]
    for text, depends in sources:
        for language in languages:
            made.append(
                built.add(
                    TRANSLATOR,
                    text,
                    f"Translate to {language}",
                    depends,
                    {"target_lang": language},
                )
            )
    return made


def _transform(built: _Built, clause: Clause, tool: str, reads: Sequence[str]) -> list[str]:
    """Summarize, count, sort, ... one text: given, read from an earlier step, or each of them."""
    description = _short(clause.text)
    params = None
    if tool == "delay":
        params = {"seconds": _seconds(clause.text)}
        return [built.add(tool, escape(clause.source or ""), description, reads, params)]
    if clause.source is not None:
        return [built.add(tool, escape(clause.source), description)]
    if not reads:
        if tool == SUMMARIZER and len(clause.text.split()) > 2:
            return [_writer(built, clause, ())]  # "summarize the history of rome": write it
        raise MissingText(
            f"there is no text for {clause.text!r}: put it in quotes or after a colon"
        )
    if _EACH.search(clause.text) and len(reads) > 1:
        return [built.add(tool, f"{{{r}}}", description, [r]) for r in reads]
    return [built.add(tool, "\n\n".join(f"{{{r}}}" for r in reads), description, reads)]


def _seconds(text: str) -> int | float:
    number = re.search(r"\d+(?:\.\d+)?", text)
    if number:
        value = float(number.group(0))
        return int(value) if value.is_integer() else value
    for word, value in _NUMBERS.items():
        if re.search(rf"\b{word}\b", text, re.I):
            return value
    return 1


def expand_items(clauses: Sequence[Clause]) -> list[Clause]:
    """One instruction over several things becomes one clause per thing."""
    expanded: list[Clause] = []
    pending: Clause | None = None  # "for each of A, B and C" cut off from its instruction
    for clause in clauses:
        if pending is not None:
            clause = Clause(f"{pending.text}, {clause.text}", clause.source, pending.joiner)
            pending = None
        elif _FOR_EACH_ALONE.match(clause.text) and clause.source is None:
            pending = clause
            continue
        if clause.source is not None and (match := _EACH_OF_THESE.search(clause.text)):
            items = _split_list(clause.source)
            if 2 <= len(items) <= MAX_ITEMS:
                head = clause.text[: match.start()].rstrip()
                expanded += [
                    Clause(f"{head} {item}", None, clause.joiner if i == 0 else "and")
                    for i, item in enumerate(items)
                ]
                continue
        if expanded and clause.source is None and _is_item(clause.text):
            previous = expanded[-1]
            like = _like(previous.text, clause.text)
            expanded.append(Clause(like, None, clause.joiner or "and", 1))
            continue
        expanded += _items(clause)
    if pending is not None:
        expanded.append(pending)
    return _count_with_items(expanded)


def _is_item(text: str) -> bool:
    """``one about fog``, ``make one about fog``, ``a limerick about cheese``."""
    text = re.sub(rf"^(?:{GENERATE_VERBS})(?:\s+me)?\s+(?=(?:one|another)\s)", "", text, flags=re.I)
    return bool(
        re.match(
            rf"^(?:and\s+)?(?:one|another|uno|una|otro|otra|un|une|einen|eine|ein)"
            rf"\s+(?:{_ABOUT})\b|^(?:a|an)\s+(?:\w+\s+){{0,2}}(?:{GENRES})s?\b",
            text,
            re.I,
        )
    )


def _like(previous: str, item: str) -> str:
    """``one about the moon`` after ``write a poem about the sun``: ``write a poem about the
    moon``; ``a limerick about a cat`` after ``give me a haiku ...``: ``give me a limerick ...``."""
    item = re.sub(r"^and\s+", "", item, flags=re.I)
    item = re.sub(rf"^(?:{GENERATE_VERBS})(?:\s+me)?\s+(?=(?:one|another)\s)", "", item, flags=re.I)
    if match := re.match(rf"^\w+\s+(?P<prep>{_ABOUT})\s+(?P<topic>.+)$", item, re.I):
        head = re.match(rf"^(?P<head>.*?)\s+(?:{_ABOUT})\s", previous, re.I)
        if head:
            return f"{head['head']} {match['prep']} {match['topic']}"
    verb = re.match(rf"^(?P<verb>(?:{GENERATE_VERBS})(?:\s+me)?)\b", previous, re.I)
    return f"{verb['verb']} {item}" if verb else item


def _items(clause: Clause) -> list[Clause]:
    if clause.source is not None or tool_for(clause)[0] != WRITER:
        return [clause]
    text = clause.text
    if (match := _FOR_EACH.match(text)) and STARTS_INSTRUCTION.match(match["rest"]):
        items = _split_list(match["items"])
        if 2 <= len(items) <= MAX_ITEMS:
            return [
                Clause(f"{match['rest']} ({item})", None, clause.joiner if i == 0 else "and")
                for i, item in enumerate(items)
            ]
    if match := re.match(r"^(?P<rest>.+?)\s+for\s+each\s+of\s+(?P<items>.+)$", text, re.I):
        items = _split_list(match["items"])
        if 2 <= len(items) <= MAX_ITEMS:
            return [
                Clause(f"{match['rest']} for {item}", None, clause.joiner if i == 0 else "and")
                for i, item in enumerate(items)
            ]
    if match := re.match(r"^(?P<rest>.+?\b(?:about|on|for))\s+each\s+season\b", text, re.I):
        return [
            Clause(f"{match['rest']} {season}", None, clause.joiner if i == 0 else "and")
            for i, season in enumerate(_SEASONS)
        ]
    if match := _COUNTED.match(text):
        raw = match["n"].lower()
        count = int(raw) if raw.isdigit() else _NUMBERS[raw]
        topics = _split_list(match["topics"]) if match["topics"] else []
        thing = re.sub(
            r"^(?:(?:different|distinct|separate|unique|new)\s+)+",
            "",
            _singular(match["thing"]),
            flags=re.I,
        )
        verb = match["verb"].strip()
        if 2 <= count <= MAX_ITEMS and re.search(r"s\b|es\b", match["thing"]):
            prep = f" {match['prep']}" if match["prep"] else ""
            if len(topics) == count:
                return [
                    Clause(
                        f"{verb} {_article(thing)} {thing}{prep} {t}",
                        None,
                        clause.joiner if i == 0 else "and",
                        0,
                    )
                    for i, t in enumerate(topics)
                ]
            about = f"{prep} {match['topics']}" if match["topics"] else ""
            return [
                Clause(
                    f"{verb} {_article(thing)} {thing}{about} (number {i + 1} of {count}, "
                    "different from the others)",
                    None,
                    clause.joiner if i == 0 else "and",
                    count,
                )
                for i in range(count)
            ]
    if match := re.match(
        rf"^(?P<head>(?:{GENERATE_VERBS})(?:\s+me)?\s+(?:\w+\s+){{0,2}}(?:{GENRES})s)\s+"
        rf"(?P<prep>about|for|on)\s+(?P<topics>.+)$",
        text,
        re.I,
    ):
        topics = _split_list(match["topics"])
        if 2 <= len(topics) <= MAX_ITEMS and all(len(t.split()) <= 4 for t in topics):
            head = match["head"]
            return [
                Clause(
                    f"{head} {match['prep']} {t}".replace(head, _singular_phrase(head)),
                    None,
                    clause.joiner if i == 0 else "and",
                )
                for i, t in enumerate(topics)
            ]
    return [clause]


def _count_with_items(clauses: list[Clause]) -> list[Clause]:
    """``two haikus, one about rain and one about snow``: the items replace the copies."""
    result: list[Clause] = []
    index = 0
    while index < len(clauses):
        clause = clauses[index]
        count = clause.item_of
        if count and count > 1 and index + count < len(clauses) + count:
            copies = clauses[index : index + count]
            after = clauses[index + count : index + 2 * count]
            if (
                len(after) == count
                and all(c.joiner == "and" for c in after)
                and all("(number" not in c.text for c in after)
            ):
                result += after
                index += 2 * count
                continue
            result += copies
            index += count
            continue
        result.append(clause)
        index += 1
    return result


def _split_list(text: str) -> list[str]:
    items = re.split(
        r"\s*,\s*(?:and\s+|&\s*|y\s+|et\s+|und\s+)?|\s+(?:and|&|y|et|und|e)\s+",
        text.strip(" .-–—"),
        flags=re.I,
    )
    return [item.strip() for item in items if item.strip()]


def _singular(noun: str) -> str:
    words = noun.split()
    last, lower = words[-1], words[-1].lower()
    if lower.endswith("ies") and len(lower) > 4:
        last = last[:-3] + "y"
    elif lower.endswith(("ches", "shes", "sses", "xes")):
        last = last[:-2]
    elif lower.endswith("s") and not lower.endswith(("ss", "us", "is")):
        last = last[:-1]
    return " ".join([*words[:-1], last])


def _singular_phrase(head: str) -> str:
    words = head.split()
    return " ".join([*words[:-1], _article(_singular(words[-1])), _singular(words[-1])])


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def _strip_quotes(text: str) -> str:
    return re.sub(r"'[^']*'", " ", text)


def _sentence(text: str) -> str:
    text = text.strip().rstrip(",;")
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "?", "!", ":")) else text + "."


def _short(text: str, limit: int = 60) -> str:
    text = text.strip().rstrip(".")
    text = text[:1].upper() + text[1:]
    return text if len(text) <= limit else text[: limit - 1] + "…"
