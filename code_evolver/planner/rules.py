"""The rules planner: common coordinated requests become plans with no LLM, in microseconds.

It recognises a few shapes of request and declines (returns ``None``) whenever it is unsure,
leaving the request to the LLM overseer:

* ``X and translate it to A, B and C`` -> X, then one translation per language, in parallel;
* ``translate "T" to A and B`` -> one translation per language, in parallel;
* ``X, then Y, then Z`` / ``X and summarize it`` -> a chain, each step reading the previous;
* ``N different Xs about A, B and C`` -> N independent steps;
* ``X and Y`` (two independent generation tasks) -> two parallel steps;
* a single instruction (``write a haiku about rain``) -> one step.

Deterministic: the same request always gives the same plan.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from code_evolver.plan import Plan
from code_evolver.planner.languages import parse_languages
from code_evolver.templating import escape

GENERATOR, TRANSLATOR, SUMMARIZER = "content_generator", "translator", "summarizer"

_VERBS = (
    "write|tell|compose|create|generate|draft|make|give|produce|invent|suggest|list|explain|"
    "describe|brainstorm|outline|come up with|prepare|design|plan|propose|name"
)
_VERB = re.compile(rf"^(?:please\s+)?(?:{_VERBS})\b", re.I)
_IT = r"(?:it|this|that|them|these|those|the result|the results|the output|the text)"
_TRANSLATE_IT = re.compile(rf"^translate\s+{_IT}\s+(?:in)?to\s+(?P<langs>.+)$", re.I)
_SUMMARIZE_IT = re.compile(rf"^(?:summari[sz]e\s+{_IT}|sum\s+{_IT}\s+up)(?P<rest>.*)$", re.I)
_REFERS = re.compile(r"\b(?:it|them|the result|the results|the output|the above)\b", re.I)
_THEN = re.compile(r"\s*(?:[,;]\s*(?:and\s+)?then|\band\s+then|\bthen)\s+", re.I)
_AND_DEPENDENT = re.compile(
    rf",?\s+and\s+(?=(?:translate|summari[sz]e|sum)\s+{_IT}\b|(?:{_VERBS})\b[^,]*\b{_IT}\b)",
    re.I,
)
_DIRECT_TRANSLATE = re.compile(
    r"^translate\s*(?:the\s+(?:text|sentence|phrase|word)\s*)?:?\s*(?P<text>.+?)\s+(?:in)?to\s+"
    r"(?P<langs>[a-z ,&]+)$",
    re.I,
)
_QUOTED = re.compile(r"""^["'“‘](?P<text>.+)["'”’]$""")
_SUMMARY = re.compile(
    r"^summari[sz]e(?:\s+(?:this|the following)(?:\s+text)?)?\s*:\s*(?P<text>.+)$", re.I | re.S
)
_GENRES = (
    "joke|poem|haiku|limerick|story|essay|summary|tweet|headline|email|letter|song|slogan|"
    "riddle|fact|quote|recipe|list|description|sonnet|ode|tagline|title|caption|bio|speech|"
    "toast|review|post|paragraph|sentence|idea|name|question|answer|fable|tale|ballad|rhyme|pun"
)
_AND_PARALLEL = re.compile(rf"\s*(?:,\s*|\s+)and\s+(?=(?:(?:{_VERBS})\b|(?:a|an|one)\s+\w+))", re.I)
_GENRE_START = re.compile(rf"^(?:a|an|one)\s+(?:\w+\s+)?(?:{_GENRES})s?\b", re.I)
_NUMBERS = {
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "a couple of": 2, "a few": 3, "several": 3,
}  # fmt: skip
_COUNT = re.compile(
    rf"^(?P<verb>(?:please\s+)?(?:{_VERBS})(?:\s+me)?)\s+(?P<n>\d+|{'|'.join(_NUMBERS)})\s+"
    r"(?:(?:different|distinct|separate|short|funny|new|unique)\s+)*(?P<thing>[a-z]+(?:\s[a-z]+)?)"
    r"\s+(?P<prep>about|on|for|featuring)\s+(?P<topics>.+)$",
    re.I,
)
_MAX_PARALLEL_ITEMS = 12


@dataclass
class _Builder:
    """Accumulates steps with ids step1, step2, ..."""

    steps: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        tool: str,
        text: str,
        description: str,
        *,
        depends_on: list[str] | None = None,
        params: dict[str, Any] | None = None,
        group: int | None = None,
    ) -> str:
        step_id = f"step{len(self.steps) + 1}"
        step: dict[str, Any] = {
            "step_id": step_id,
            "description": description,
            "tool": tool,
            "input": text,
            "depends_on": depends_on or [],
            "parallel_group": group,
        }
        if params:
            step["params"] = params
        self.steps.append(step)
        return step_id


def rules_plan(request: str, tools: Collection[str]) -> Plan | None:
    """A plan for ``request`` when it has a shape the rules know, else ``None``."""
    full = " ".join(request.split())
    text = full.rstrip(" .!")
    if not text or len(text) > 2000:
        return None
    builder = _Builder()
    planned = (
        _summary(full, builder)
        or _direct_translation(text, builder)
        or _chain(text, builder)
        or _counted(text, builder)
        or _parallel(text, builder)
        or _single(text, builder)
    )
    if not planned:
        return None
    if any(step["tool"] not in tools for step in builder.steps):
        return None
    return Plan.from_data({"request": request.strip(), "steps": builder.steps})


def _sentence(text: str) -> str:
    """An instruction as a sentence: capitalised, ending with a full stop."""
    text = text.strip().rstrip(",;")
    if text.lower().startswith("please "):
        text = text[7:]
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "?", "!", ":")) else text + "."


def _short(text: str, limit: int = 60) -> str:
    text = text.strip().rstrip(".")
    text = text[:1].upper() + text[1:]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _direct_translation(text: str, builder: _Builder) -> bool:
    match = _DIRECT_TRANSLATE.match(text)
    if not match or _REFERS.match(match["text"]):
        return False
    languages = parse_languages(match["langs"])
    if not languages or len(languages) > _MAX_PARALLEL_ITEMS:
        return False
    quoted = _QUOTED.match(match["text"].strip())
    source = escape(quoted["text"] if quoted else match["text"].strip())
    group = 1 if len(languages) > 1 else None
    for language in languages:
        builder.add(
            TRANSLATOR,
            source,
            f"Translate to {language}",
            params={"target_lang": language},
            group=group,
        )
    return True


def _chain(text: str, builder: _Builder) -> bool:
    """``X, then Y`` and ``X and <do something to it>``: each part reads the previous one."""
    parts = [p for chunk in _THEN.split(text) for p in _AND_DEPENDENT.split(chunk) if p]
    if len(parts) < 2 or not _VERB.match(parts[0]) or _COUNT.match(parts[0]):
        return False
    previous = [builder.add(GENERATOR, escape(_sentence(parts[0])), _short(parts[0]))]
    for index, part in enumerate(parts[1:], start=1):
        last = index == len(parts) - 1
        step_ids = _follow_up(part, previous, builder, last=last)
        if step_ids is None:
            builder.steps.clear()
            return False
        previous = step_ids
    return True


def _follow_up(
    part: str, previous: list[str], builder: _Builder, *, last: bool
) -> list[str] | None:
    """The steps for one later part of a chain, reading the previous step's output."""
    if len(previous) != 1:
        return None  # what would "it" be after a fan-out?
    prev = previous[0]
    if match := _TRANSLATE_IT.match(part):
        languages = parse_languages(match["langs"])
        if (
            not languages
            or len(languages) > _MAX_PARALLEL_ITEMS
            or (len(languages) > 1 and not last)
        ):
            return None
        group = 1 if len(languages) > 1 else None
        return [
            builder.add(
                TRANSLATOR,
                f"{{{prev}}}",
                f"Translate to {language}",
                depends_on=[prev],
                params={"target_lang": language},
                group=group,
            )
            for language in languages
        ]
    if match := _SUMMARIZE_IT.match(part):
        if match["rest"].strip(" ,"):
            return None
        return [builder.add(SUMMARIZER, f"{{{prev}}}", "Summarize", depends_on=[prev])]
    if _VERB.match(part) or re.match(
        r"^(?:rewrite|shorten|expand|improve|edit|turn|add)\b", part, re.I
    ):
        # "then" asks for an order: the step gets what came before, as context.
        instruction = escape(_sentence(part))
        return [
            builder.add(GENERATOR, f"{instruction}\n\n{{{prev}}}", _short(part), depends_on=[prev])
        ]
    return None


def _counted(text: str, builder: _Builder) -> bool:
    """``3 different jokes about cats, dogs and birds``: one independent step per item."""
    match = _COUNT.match(text)
    if not match:
        return False
    raw = match["n"].lower()
    count = int(raw) if raw.isdigit() else _NUMBERS[raw]
    topics = _split_list(match["topics"])
    thing = _singular(match["thing"])
    verb = re.sub(r"^please\s+|\s+me$", "", match["verb"], flags=re.I)
    if not topics or count < 1 or count > _MAX_PARALLEL_ITEMS:
        return False
    if len(topics) == 1:
        items = [
            f"{verb} {_article(thing)} {thing} {match['prep']} {topics[0]}"
            + (f" (number {i} of {count}, different from the others)" if count > 1 else "")
            for i in range(1, count + 1)
        ]
    elif len(topics) == count:
        items = [f"{verb} {_article(thing)} {thing} {match['prep']} {topic}" for topic in topics]
    else:
        return False  # "3 jokes about cats and dogs": which topic gets two?
    group = 1 if len(items) > 1 else None
    for item in items:
        builder.add(
            GENERATOR, escape(_sentence(item)), _short(item.split(" (number")[0]), group=group
        )
    return True


def _parallel(text: str, builder: _Builder) -> bool:
    """``write a haiku about autumn and a limerick about cheese``: independent tasks."""
    if not _VERB.match(text) or _REFERS.search(text):
        return False
    parts = [p.strip() for p in _AND_PARALLEL.split(text) if p.strip()]
    if len(parts) < 2 or len(parts) > _MAX_PARALLEL_ITEMS:
        return False
    verb = _VERB.match(parts[0])
    assert verb is not None
    tasks = [parts[0]]
    for part in parts[1:]:
        if _VERB.match(part):
            tasks.append(part)
        elif _GENRE_START.match(part):
            tasks.append(f"{verb.group(0)} {part}")
        else:
            return False  # "a story about cats and a dog": "a dog" is part of the topic
    for task in tasks:
        builder.add(GENERATOR, escape(_sentence(task)), _short(task), group=1)
    return True


def _summary(text: str, builder: _Builder) -> bool:
    """``summarize: <text>`` (the text is kept exactly, punctuation and all)."""
    if match := _SUMMARY.match(text):
        builder.add(SUMMARIZER, escape(match["text"]), "Summarize the text")
        return True
    return False


def _single(text: str, builder: _Builder) -> bool:
    """One instruction led by a generation verb."""
    if not _VERB.match(text) or _REFERS.search(text) or " and " in f" {text.lower()} ":
        return False
    builder.add(GENERATOR, escape(_sentence(text)), _short(text))
    return True


def _split_list(text: str) -> list[str]:
    """``cats, dogs, and birds`` -> [cats, dogs, birds]."""
    items = re.split(r"\s*,\s*(?:and\s+|&\s*)?|\s+(?:and|&)\s+", text.strip())
    return [item.strip() for item in items if item.strip()]


def _singular(noun: str) -> str:
    words = noun.split()
    last = words[-1]
    lower = last.lower()
    if lower.endswith("ies") and len(lower) > 4:
        last = last[:-3] + "y"
    elif lower.endswith(("ches", "shes", "sses", "xes")):
        last = last[:-2]
    elif lower.endswith("s") and not lower.endswith(("ss", "us", "is")):
        last = last[:-1]
    return " ".join([*words[:-1], last])


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"
