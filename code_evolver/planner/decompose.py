"""From clauses to a plan: the rules planner.

The request is cut into clauses (``planner.clauses``), one instruction over several things into
one clause per thing (``planner.items``); each clause gets a tool by its words
(``planner.tool_words``) and reads the earlier steps its references name
(``planner.references``). A clause with several texts of its own ("these two reviews: 'A'
'B'") makes a step per text.

When the words decide nothing, :func:`decompose_choosing` asks for a *choice*, not a plan:
the tool of one clause, from the tools that fit (``choose``, a model under an enum grammar),
or none where the rules are certain. A request the rules cannot read (a language they do not
know, too many steps) is :class:`NotDecomposable`; one that asks to work on text it does not
give is :class:`MissingText`; both with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from code_evolver.plan import RUN_INPUT, Plan
from code_evolver.planner.clauses import STARTS_INSTRUCTION, Clause, split_request
from code_evolver.planner.items import MAX_ITEMS, NUMBERS, expand_items
from code_evolver.planner.languages import find_languages
from code_evolver.planner.references import (
    EACH,
    MEASURES,
    Made,
    names_the_given_text,
    what_it_reads,
)
from code_evolver.planner.tool_words import (
    CHOICES,
    COMBINE,
    INTO_LANGUAGE,
    SUMMARIZER,
    TRANSLATOR,
    WRITER,
    tool_for,
)
from code_evolver.templating import escape

Chooser = Callable[[Clause, Sequence[str]], Awaitable[str]]


class NotDecomposable(ValueError):
    """The rules cannot read this request; the message says why (shown if nothing else works)."""


class MissingText(NotDecomposable):
    """The request asks to work on text it does not give: no planner can make that up.
    ``question`` asks for it; the message adds how to give it on the command line."""

    def __init__(self, question: str) -> None:
        super().__init__(f"{question} {_GIVE_TEXT}")
        self.question = question


_GIVE_TEXT = 'Put it in quotes or after a colon, or pipe it in: echo TEXT | evolve "..."'


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
    request: str,
    tools: Collection[str],
    chosen: Mapping[int, str] | None = None,
    *,
    has_input: bool = False,
) -> Decomposition:
    """The plan of ``request`` by the rules; ``chosen`` settles uncertain clauses' tools.
    ``has_input``: text was piped to the request; steps read it as ``{input}``.

    Raises :class:`NotDecomposable` when the rules cannot make a plan that can run.
    """
    clauses = expand_items(split_request(request).clauses)
    if not clauses:
        raise NotDecomposable("the request has no instruction")
    chosen = chosen or {}
    built, uncertain = Made(has_input=has_input), []
    for index, clause in enumerate(clauses):
        tool, certain = tool_for(clause)
        if clause.joiner == "same" and built.tools:
            tool, certain = built.tools[-1], True
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
    request: str, tools: Collection[str], choose: Chooser, *, has_input: bool = False
) -> Decomposition:
    """:func:`decompose`, with ``choose`` (a model) asked for each uncertain clause's tool."""
    first = decompose(request, tools, has_input=has_input)
    if not first.uncertain:
        return first
    options = [t for t in CHOICES if t in tools]
    chosen = {i: await choose(first.clauses[i], options) for i in first.uncertain}
    try:
        return decompose(request, tools, chosen, has_input=has_input)
    except NotDecomposable:  # the choice cannot run (a translation with no language named)
        return first


def rules_plan(request: str, tools: Collection[str], *, has_input: bool = False) -> Plan | None:
    """The rules' plan of ``request``, or None when they cannot make one."""
    try:
        return decompose(request, tools, has_input=has_input).plan
    except NotDecomposable:
        return None


def _known(clause: Clause) -> bool:
    tool, certain = tool_for(clause)
    return certain and (
        STARTS_INSTRUCTION.match(clause.text) is not None
        or clause.item_of is not None
        or clause.joiner in ("with", "same")
        or (tool != WRITER and clause.source is not None)
    )


def _add(built: Made, clauses: Sequence[Clause], index: int, tool: str) -> None:
    clause = clauses[index]
    reads = what_it_reads(built, clauses, index, tool)
    if names_the_given_text(clauses, index) and not built.has_input:
        clause, reads = Clause(clause.text, clauses[0].source, clause.joiner, clause.item_of), []
    if not reads and built.reads_piped(clause, tool):
        reads = [RUN_INPUT]
    if not reads and _sibling_of_source(clauses, index, tool, built):
        clause = Clause(clause.text, clauses[index - 1].source, clause.joiner, clause.item_of)
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


def _sibling_of_source(clauses: Sequence[Clause], index: int, tool: str, built: Made) -> bool:
    """``summarize the following, and separately translate it: TEXT``: "it" is the text the
    clause before was given, not what that clause made."""
    clause = clauses[index]
    if index == 0 or not built.tools:
        return False
    measured = built.tools[-1] in MEASURES and clause.joiner == "and"  # "count ..., summarize it"
    return (
        clause.source is None
        and (clause.joiner == "also" or measured)
        and clauses[index - 1].source is not None
        and tool != WRITER
        and built.tools[-1] != WRITER
    )


def _writer(built: Made, clause: Clause, reads: Sequence[str]) -> str:
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


def _translations(built: Made, clause: Clause, reads: Sequence[str]) -> list[str]:
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
    text = _strip_quotes(clause.text)
    targets = INTO_LANGUAGE.search(text)  # "the German version back into English": English
    languages = (targets and find_languages(targets["languages"])) or find_languages(text)
    if not languages:
        raise NotDecomposable(f"which language? {clause.text!r} names none")
    if clause.source is None and not reads:
        raise MissingText(f"what text should {clause.text!r} translate?")
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


def _transform(built: Made, clause: Clause, tool: str, reads: Sequence[str]) -> list[str]:
    """Summarize, count, sort, ... one text: given, read from an earlier step, or each of them."""
    description = _short(clause.text)
    params = None
    if tool == "delay":
        params = {"seconds": _seconds(clause.text)}
        return [built.add(tool, escape(clause.source or ""), description, reads, params)]
    if clause.source is not None:
        texts = _source_parts(clause) or [clause.source]
        return [built.add(tool, escape(text), description) for text in texts]
    if not reads:
        pronoun = re.search(r"\b(?:it|this|these|that|them)\b", clause.text, re.I)
        if tool == SUMMARIZER and len(clause.text.split()) > 2 and not pronoun:
            return [_writer(built, clause, ())]  # "summarize the history of rome": write it
        raise MissingText(f"what text should {clause.text!r} work on?")
    each = EACH.search(clause.text) or (
        tool in MEASURES
        and (_BOTH.search(clause.text) or _IN_X_AND_IN_Y.search(clause.text))
        and not _TOTAL.search(clause.text)
    )
    if each and len(reads) > 1:  # "count the words of both": a count of each
        return [built.add(tool, f"{{{r}}}", description, [r]) for r in reads]
    return [built.add(tool, "\n\n".join(f"{{{r}}}" for r in reads), description, reads)]


_SEVERAL = re.compile(
    r"\b(?:two|three|four|five|both|each|separately|these\s+\w+s|those\s+\w+s|twee|drie|"
    r"deux|trois|dos|tres|zwei|drei|due|tre|duas|três|beide|ambos|ambas|entramb[ei])\b"
    r"|\b(?:text|note|review|paragraph)\s+(?:[A-E1-5])\s+and\b"
    r"|\bfirst\s+\w+\s+and\s+the\s+second\b",
    re.I,
)
_LABEL = re.compile(
    r"(?:^|(?<=[\s.'\"”]))(?:first|second|third|fourth|fifth|[A-E]|(?:review|text|paragraph|"
    r"blurb|email|option|version|note|item|message|comment|story|poem)\s+(?:[A-E1-5]|one|two|"
    r"three))\s*:\s*",
    re.I,
)
_QUOTED_PART = re.compile(r"""["“'‘](?P<text>[^"”'’\n]{3,}?)["”'’](?=\s|$|[,.;])""")


_BOTH = re.compile(r"\b(?:both|beide\w*|ambos|ambas|les\s+deux|entramb[ei])\b", re.I)
_IN_X_AND_IN_Y = re.compile(r"\b(?:in|of)\s+the\s+\w+\s+and\s+(?:in|of)\s+the\b", re.I)
"""``count the words in the article and in the summary``: a count of each."""
_TOTAL = re.compile(
    r"\b(?:across|in\s+total|total|together|combined|altogether|overall|insgesamt|en\s+total)\b",
    re.I,
)
"""A measure of both that is one figure ("the words across both")."""


def _source_parts(clause: Clause) -> list[str] | None:
    """Several texts in one source ("these two reviews: 'A' 'B'", "First: ... Second: ..."),
    when the clause says there are several; None otherwise."""
    if clause.source is None or not _SEVERAL.search(clause.text):
        return None
    labels = list(_LABEL.finditer(clause.source))
    if len(labels) >= 2:
        ends = [m.start() for m in labels[1:]] + [len(clause.source)]
        parts = [clause.source[m.end() : end].strip() for m, end in zip(labels, ends, strict=True)]
    else:
        parts = [m["text"].strip() for m in _QUOTED_PART.finditer(clause.source)]
    parts = [p for p in parts if p]
    return parts if 2 <= len(parts) <= MAX_ITEMS else None


def _seconds(text: str) -> int | float:
    number = re.search(r"\d+(?:\.\d+)?", text)
    if number:
        value = float(number.group(0))
        return int(value) if value.is_integer() else value
    for word, value in NUMBERS.items():
        if re.search(rf"\b{word}\b", text, re.I):
            return value
    return 1


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
