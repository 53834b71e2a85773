"""References: which earlier steps a clause reads.

``it`` and ``the result`` read the clause before; ``them`` / ``both`` / ``pick the best`` every
result not yet used; ``the summary`` / ``the translation`` / ``the original`` the step that made
it; ``the intro and the three histories`` the clauses that wrote them; a transform (translate,
summarize, count, ...) with no text of its own reads the clause before. An item's ``it`` is its
topic (``an argument for remote work and one against it``).

With text piped to the request, that text is a result too: ``{input}`` (``RUN_INPUT``) is what
a transform with no text of its own reads first, and what ``the original`` names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from code_evolver.plan import RUN_INPUT
from code_evolver.planner.clause_words import GENRES
from code_evolver.planner.clauses import Clause
from code_evolver.planner.items import singular
from code_evolver.planner.languages import canonical
from code_evolver.planner.tool_words import COMBINE, NAMED_RESULTS, SUMMARIZER, TRANSLATOR, WRITER

PLURAL = re.compile(
    r"\b(?:them|both|all|these|those|they|their|each|every|beide\w*|ambos|"
    r"ambas|tous|toutes|todos|todas|alle|the\s+two|os\s+dois|los\s+dos|les\s+deux|"
    r"die\s+beiden|i\s+due|entramb[ei]|ambedue|tutt[ei]\s+e\s+due|allebei|beide|ze)\b|\w+-les\b|\w+(?:r|[áéíóú]\w*)(?:los|las)\b(?=\s|$)",
    re.I,
)
_CHOOSES = re.compile(
    r"^(?:pick|choose|select|rank|rate|compare|which|decide|elige|escoge|choisis|w[äa]hle|"
    r"compara|compare|scegli|vergleiche|zeg\s+welke|say\s+which|tell\s+me\s+which|"
    r"dime\s+cu[aá]l|dis-moi\s+lequel|sag\s+(?:mir\s+)?welche)\b",
    re.I,
)
_EVERYTHING = re.compile(r"\b(?:everything|all\s+of\s+(?:it|this)|all\s+the\s+results)\b", re.I)
# Spanish and Italian clitics ("tradúcela", "traducirlo", "uniscile"): an infinitive's r or an
# accented vowel before the pronoun, so that "umbrella" or "tortillas" are not references.
EACH = re.compile(
    r"\b(?:each|every|cada|chaque|chacun\w*|jede\w*|ogni|ognuno|ognuna|elk|elke)\b", re.I
)
_SINGULAR = re.compile(
    r"\b(?:it|its|this|that|what\s+you\s+(?:wrote|made|got)|your\s+(?:answer|reply|result|"
    r"summary|translation|text|poem|story|list)|the\s+(?:result|output|text|above|best|story|poem|joke|list|"
    rf"names?|one|{GENRES})s?|which|based\s+on|le|la|lo|es|ihn)\b|\w+-(?:le|la|lo)\b"
    r"|\w+(?:r|[áéíóú]\w*)(?:lo|la)\b(?=\s|$)",
    re.I,
)


MEASURES = frozenset({"word_count", "line_count"})


@dataclass
class Made:
    steps: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[list[str]] = field(default_factory=list)
    """The step ids each clause produced, by clause."""
    tools: list[str] = field(default_factory=list)
    """The tool of each clause."""
    used: set[str] = field(default_factory=set)
    has_input: bool = False
    """Text was piped to the request: ``RUN_INPUT`` may be read like a step's output."""

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
            "depends_on": [r for r in reads if r != RUN_INPUT],  # the input is no step
        }
        if params:
            step["params"] = params
        self.steps.append(step)
        self.used.update(reads)
        return step_id

    def leaves(self) -> list[str]:
        return [s["step_id"] for s in self.steps if s["step_id"] not in self.used]

    def depends_on(self, step_id: str) -> list[str]:
        return next(list(s["depends_on"]) for s in self.steps if s["step_id"] == step_id)

    def reads_piped(self, clause: Clause, tool: str) -> bool:
        """Whether a clause that reads no step reads the piped text: a transform with no text
        of its own, or a writer pointing at "this"/"it" ("write a reply to this")."""
        if not self.has_input or clause.source is not None or tool == "delay":
            return False
        return tool != WRITER or _SINGULAR.search(clause.text) is not None


_NOT_THAT = re.compile(
    r",?\s*\b(?:not|rather\s+than|instead\s+of|nicht|pas|no)\s+(?:the|die|das|le|la|el)\s+\w+",
    re.I,
)
"""A result named only to say it is not the one meant."""


_ORIGINAL = re.compile(dict(NAMED_RESULTS)["original"], re.I)


def names_the_given_text(clauses: Sequence[Clause], index: int) -> bool:
    """``..., and uppercase the original`` when the request gave the text: the original is
    that text, not what the first step made of it."""
    return (
        index > 0
        and clauses[index].source is None
        and clauses[0].source is not None
        and _ORIGINAL.search(_NOT_THAT.sub("", clauses[index].text)) is not None
    )


def what_it_reads(built: Made, clauses: Sequence[Clause], index: int, tool: str) -> list[str]:
    """The step ids this clause reads."""
    clause = clauses[index]
    if clause.source is not None or index == 0:
        return []
    text = _NOT_THAT.sub("", clause.text)  # "(the original, not the summary)"
    if clause.joiner == "with" and built.steps:
        return list(built.steps[-1]["depends_on"])
    if clause.item_of is not None and not PLURAL.search(text):
        return []  # an item's "it" is its topic ("an argument against it")
    if ordinal := _by_position(built, text):
        return ordinal
    named: list[str] = []
    for kind, pattern in NAMED_RESULTS:
        if found := re.search(pattern, text, re.I):
            every = re.search(r"(?:ies|ions|s)\b", found.group(0), re.I) is not None
            named += _named(built, kind, every=every)
    named += _things_named(built, clauses, index)
    if named:
        return list(dict.fromkeys(named))
    if _EVERYTHING.search(text):
        return [s["step_id"] for s in built.steps]
    plural = any(p.search(text) for p in (PLURAL, EACH)) or _CHOOSES.match(text) is not None
    singular = _SINGULAR.search(text) is not None
    transform = tool != WRITER
    if not (plural or singular or transform or clause.joiner == "then"):
        return []
    if tool == "delay" and clause.joiner != "then":
        return []
    if plural or tool == COMBINE:
        return built.leaves() or built.outputs[-1]
    sibling = clause.joiner == "also" and tool != WRITER and built.tools[-1] != WRITER
    if (built.tools[-1] in MEASURES and clause.joiner != "then") or sibling:
        # "count its words and shout it": "it" is what was counted, not the count; "caps lock
        # it and also translate it": both read the same text.
        return sorted({r for s in built.outputs[-1] for r in built.depends_on(s)}) or []
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


def _things_named(built: Made, clauses: Sequence[Clause], index: int) -> list[str]:
    """``the intro with the three histories``: the steps of the earlier clauses that wrote an
    intro and histories (the noun, singular or plural, in their words)."""
    found: list[str] = []
    for match in _THE_THING.finditer(clauses[index].text):
        noun = singular(match["noun"].lower())
        if noun in _NOT_THINGS or not _WRITTEN.fullmatch(noun):
            continue  # "the sea" in two clauses is a topic, not a reference
        pattern = re.compile(rf"\b{re.escape(noun)}(?:s|es)?\b", re.I)
        for earlier in range(index):
            if (
                pattern.search(clauses[earlier].text)
                and earlier < len(built.outputs)
                and built.tools[earlier] == WRITER  # "translate the summary" made no summary
            ):
                found += built.outputs[earlier]
    return found


_FIRST_N = re.compile(
    r"\bthe\s+(?P<end>first|last)\s+(?P<n>two|three|2|3)\b"
    r"|\b(?:los|las|os|as)\s+(?P<n_es>dos|dois|duas|tres|três)\s+primer[oa]s|\bprimeir[oa]s\b"
    r"|\b(?:i|le)\s+prim[ie]\s+(?P<n_it>due|tre)\b|\bles\s+(?P<n_fr>deux|trois)\s+premi[eè]re?s"
    r"|\bdie\s+ersten\s+(?P<n_de>zwei|beiden|drei)\b|\bde\s+eerste\s+(?P<n_nl>twee|drie)\b",
    re.I,
)
_NTH = re.compile(
    r"\bthe\s+(?P<which>first|second|third|fourth|fifth|last)\s+(?:one|joke|poem|haiku|story|"
    r"version|answer|text|draft|bio|email)\b",
    re.I,
)
_NAMED_LANGUAGE = re.compile(r"\bthe\s+(?P<language>[a-z]+)\s+(?:one|version|translation)\b", re.I)
_COUNTS = {"two": 2, "2": 2, "dos": 2, "dois": 2, "duas": 2, "due": 2, "deux": 2, "zwei": 2,
           "beiden": 2, "twee": 2, "three": 3, "3": 3, "tres": 3, "três": 3, "tre": 3,
           "trois": 3, "drei": 3, "drie": 3}  # fmt: skip
_NTHS = {"first": 0, "second": 1, "third": 2, "fourth": 3, "fifth": 4, "last": -1}


def _by_position(built: Made, text: str) -> list[str]:
    """``the first two``, ``the second one``, ``the German one``: results by their place
    among what was made, or by the language they were translated into."""
    made = [step for outputs in built.outputs for step in outputs]
    if match := _FIRST_N.search(text):
        raw = next((g for g in match.groups()[1:] if g), "two").lower()
        count = _COUNTS.get(raw, 2)
        if len(made) > count:
            return made[-count:] if (match["end"] or "").lower() == "last" else made[:count]
    if (match := _NTH.search(text)) and len(made) >= 2:
        index = _NTHS[match["which"].lower()]
        if index < len(made):
            return [made[index]]
    if match := _NAMED_LANGUAGE.search(text):
        language = canonical(match["language"])
        translated = [
            s["step_id"]
            for s in built.steps
            if language and s.get("params", {}).get("target_lang") == language
        ]
        if len(translated) == 1:
            return translated
    return []


def _named(built: Made, kind: str, *, every: bool = False) -> list[str]:
    """The step(s) that made the named result; ``every`` for a plural ("the summaries")."""
    tool = {"summary": SUMMARIZER, "translation": TRANSLATOR, "combined": COMBINE}.get(kind)
    if every and tool is not None:
        every_one = [
            step
            for outputs, by in zip(built.outputs, built.tools, strict=True)
            if by == tool
            for step in outputs
        ]
        if every_one:
            return every_one
    if tool is None:  # the original: the piped text, else what the first clause made
        if built.has_input:
            return [RUN_INPUT]
        return built.outputs[0] if built.outputs else []
    for outputs, made in zip(reversed(built.outputs), reversed(built.tools), strict=True):
        if made == tool:
            return outputs
    return built.outputs[-1] if built.outputs else []
