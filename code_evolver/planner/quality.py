"""Checks that reject degenerate plans: valid JSON, known tools, no cycles, and still useless.

The organizer accepts any plan that can run. A weak planner (SmolLM2-135M under a grammar)
writes plans that run and are still wrong in a few recurring ways: it fills the plan up to
``max_steps`` with copies of one step, it echoes the worked examples of its prompt ("a lighthouse
keeper", "a solar lamp") instead of the request, it adds steps that have nothing to do with the
request, and it translates an instruction ("translate to French") when there is no text at all.
``plan_problems`` names each of these in one line phrased as an instruction, so the planner can
send them back in a repair message exactly like the organizer's problems.

Every check compares plain lower-cased words (accents dropped, word forms matched by a shared
prefix) with no language model and no dictionary, so each one is built to stay silent when it
is unsure: a good plan rejected costs a repair round or the single-step fallback, while a
degenerate plan let through only costs what it did before these checks existed.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from code_evolver.plan import Plan, Step
from code_evolver.planner.words import (
    OTHER_SCRIPT,
    contains,
    content_words,
    is_content,
    is_language_name,
    language_of,
    same_word,
    split_words,
    word_set,
)
from code_evolver.templating import iter_strings, parse

NOTHING_TO_TRANSLATE = "there is no text to translate"
"""How the problem starts when neither the request nor the plan has text to translate, so a
caller can recognise it and ask the user instead of repairing."""

TRANSLATION_TOOLS = frozenset({"translator", "translate_many"})

_SOURCELESS = word_set(
    "translate text texte texto sentence phrase satz following above previous output result "
    "translation language version both together separately show"
)
"""Words (and their forms) of a translation request that point at text without being any."""

_TOPIC_MARKERS = frozenset({"about", "for", "on", "of", "featuring", "named", "called"})
_ARTICLES = frozenset({"a", "an", "the", "some", "my", "our", "your"})
_COUNT = re.compile(
    r"\b(?:[2-9]|1[0-2]|two|three|four|five|six|seven|eight|nine|ten|several|deux|trois|quatre|"
    r"cinq|plusieurs|dos|tres|cuatro|cinco|varios|zwei|drei|vier|funf|mehrere)\b"
)
_EXAMPLE_LINE = re.compile(r"^\s*(?P<kind>Request|Plan):\s*(?P<text>.*\S)\s*$", re.M)
_ESCAPED_REF = re.compile(r"\{\{([A-Za-z0-9_.-]+)\}\}")


def plan_problems(
    plan: Plan, request: str, *, examples: Sequence[str] = (), max_parts: int | None = None
) -> tuple[str, ...]:
    """Problems (one line each, phrased as instructions a model can act on in a repair message)
    that make ``plan`` a degenerate answer to ``request``; empty when none were found.

    ``examples`` are the worked-example texts of the planner prompt (see ``prompt_examples``);
    ``max_parts`` is how many parts the request has, when the caller knows.
    """
    context = _Context.of(request, examples)
    copied = {s.step_id: words for s in plan.steps if (words := _copied_words(s, plan, context))}
    problems = [
        *_repeated_steps(plan, request),
        *_copied_examples(copied),
        *_unrelated_steps(plan, context, skip=copied.keys()),
        *_too_many_steps(plan, max_parts),
        *_nothing_to_translate(plan, context),
    ]
    return tuple(dict.fromkeys(problems))


def prompt_examples(prompt_text: str) -> tuple[str, ...]:
    """The example requests and their steps' inputs and descriptions, from ``Request: ...`` and
    ``Plan: {json}`` lines; a plan line that is not JSON is skipped (it is the prompt's text)."""
    texts: list[str] = []
    for match in _EXAMPLE_LINE.finditer(prompt_text):
        text = _ESCAPED_REF.sub(r"{\1}", match["text"])
        if match["kind"] == "Request":
            texts.append(text)
            continue
        try:
            data = json.loads(text)
        except ValueError:
            continue
        steps = data.get("steps") if isinstance(data, dict) else data
        for step in steps if isinstance(steps, list) else ():
            if isinstance(step, dict):
                texts += [step[k] for k in ("input", "description") if isinstance(step.get(k), str)]
    return tuple(dict.fromkeys(t for t in texts if t.strip()))


@dataclass(frozen=True)
class _Phrase:
    """A distinctive run of words from a worked example.

    A subject ("about a lighthouse keeper") counts as copied when the request lacks any of its
    words; one word alone is too likely to be the user's own, so it comes with the word before
    its "about" as ``lead`` ("haiku about spring"). A kind of text ("product description") counts
    as copied only when the request has none of its words ("a short story" for "a story" is not
    a copy).
    """

    lead: tuple[str, ...]
    words: tuple[str, ...]
    subject: bool = True

    def copied_by(self, step_words: Sequence[str], context: _Context) -> bool:
        if not contains(step_words, self.lead + self.words):
            return False
        mentioned = [context.mentions(w) for w in self.words]
        return not all(mentioned) if self.subject else not any(mentioned)


@dataclass(frozen=True)
class _Context:
    """The request as the checks need it, worked out once per plan."""

    tokens: tuple[str, ...]
    content: tuple[str, ...]
    language: str | None
    phrases: tuple[_Phrase, ...]

    @classmethod
    def of(cls, request: str, examples: Sequence[str]) -> _Context:
        tokens = split_words(request)
        return cls(
            tokens,
            content_words(tokens),
            language_of(tokens),
            _example_phrases(examples),
        )

    def mentions(self, word: str) -> bool:
        return any(same_word(word, token) for token in self.tokens)


def _repeated_steps(plan: Plan, request: str) -> list[str]:
    """Steps with the same tool, input and params give the same output: all but one are waste
    (a weak model fills the plan to ``max_steps`` this way)."""
    groups: defaultdict[str, list[Step]] = defaultdict(list)
    for step in plan.steps:
        key = json.dumps([step.tool, _normal(step.input), _normal_value(step.params)], default=str)
        groups[key].append(step)
    hint = ""
    if _COUNT.search(" ".join(split_words(request))):
        hint = ", or make each input different if the request asks for several"
    return [
        f"steps {_ids(s.step_id for s in same)} are the same (tool {_flat(same[0].tool)}, input "
        f"{_show(same[0].input)}{_show_params(same[0].params)}); keep one{hint}"
        for same in groups.values()
        if len({s.step_id for s in same}) > 1  # one id twice is the organizer's problem
    ]


def _unrelated_steps(plan: Plan, context: _Context, *, skip: Iterable[str] = ()) -> list[str]:
    """Steps that read no other step and share no word with the request, one line per input.

    Silent when unsure: a step with fewer than two words of its own, a request with none, a
    step in another language than the request (a French request planned in English steps), or
    a script without spaces between words.
    """
    if not context.content:
        return []
    skipped = set(skip)
    unrelated: defaultdict[str, list[Step]] = defaultdict(list)
    for step in plan.steps:
        if step.step_id not in skipped and not _reads(step) and _unrelated(step, context):
            unrelated[_normal(step.input)].append(step)
    return [
        f"{_ids(s.step_id for s in steps)} {'does' if len(steps) == 1 else 'do'} not belong to "
        f"the request: the input {_show(steps[0].input)} shares no word with it and reads no "
        "other step; remove the step or rewrite it for the request"
        for steps in unrelated.values()
    ]


def _unrelated(step: Step, context: _Context) -> bool:
    tokens = split_words(_literal(step.input))
    words = content_words(tokens)
    if len(set(words)) < 2 or not _comparable(language_of(tokens), context.language):
        return False
    return not any(same_word(w, r) for w in words for r in context.content)


def _comparable(step_language: str | None, request_language: str | None) -> bool:
    """Whether a step's words can be compared with the request's: the same language, or a step
    too short to show one for an English request ("Fooled me once!")."""
    if step_language == OTHER_SCRIPT:
        return False
    return step_language == request_language or (step_language is None and request_language == "en")


def _too_many_steps(plan: Plan, max_parts: int | None) -> list[str]:
    """More steps than the request has parts (one more is fine when it combines the others)."""
    if max_parts is None or max_parts < 1:
        return []
    if len(plan.steps) <= max_parts + _has_combine_step(plan):
        return []
    head = f"the plan has {len(plan.steps)} steps but the request has"
    if max_parts == 1:
        return [f"{head} only one part; use one step"]
    return [
        f"{head} {max_parts} parts; use one step per part, and at most one more that combines them"
    ]


def _nothing_to_translate(plan: Plan, context: _Context) -> list[str]:
    """Translation steps whose input is only an instruction ("translate to French", "French")
    and reads no step: the translator would translate the instruction itself."""
    empty = [s for s in plan.steps if s.tool in TRANSLATION_TOOLS and _translates_nothing(s)]
    if not empty:
        return []
    empty_ids = {s.step_id for s in empty}
    unusable = empty_ids | _readers(plan, empty_ids)
    sources = [s for s in plan.steps if s.step_id not in unusable]
    if not sources and not _has_own_text(context.tokens):
        return [
            f"{NOTHING_TO_TRANSLATE}: the request gives none ({_ids(s.step_id for s in empty)} "
            "would translate only an instruction); ask the user for it"
        ]
    problems = []
    for step in empty:
        if source := _source_for(step, plan, sources):
            fix = (
                f"make its input {{{source}}}, the output it should translate, "
                f"and list {source} in depends_on"
            )
        else:
            fix = (
                "put the text to translate in its input, or a reference to the step that writes it"
            )
        problems.append(
            f"{step.step_id} has nothing to translate (its input is only an instruction); {fix}"
        )
    return problems


def _source_for(step: Step, plan: Plan, sources: Sequence[Step]) -> str | None:
    """The step a translation most likely meant to read: the last writing step before it."""
    order = {s.step_id: i for i, s in enumerate(plan.steps)}
    writers = [s for s in sources if s.tool not in TRANSLATION_TOOLS] or list(sources)
    before = [s for s in writers if order[s.step_id] < order[step.step_id]]
    chosen = before or writers
    return chosen[-1].step_id if chosen else None


def _copied_words(step: Step, plan: Plan, context: _Context) -> tuple[str, ...]:
    """The words of a worked example that ``step`` repeats and the request lacks.

    A plan that fills one pattern with new words ("a haiku about spring", "... about summer",
    for "a haiku about each season") is expanding the request, not copying: not reported.
    Outside English a step may rightly translate the request ("a short story" for "un cuento
    corto"), so only subjects of two or more words count there.
    """
    words = content_words(split_words(f"{_literal(step.input)}\n{step.description}"))
    for phrase in context.phrases:
        if context.language != "en" and (not phrase.subject or len(phrase.words) < 2):
            continue
        if phrase.copied_by(words, context):
            return () if _fills_a_pattern(step, plan, context) else phrase.words
    return ()


def _copied_examples(copied: Mapping[str, tuple[str, ...]]) -> list[str]:
    """One line per copied topic, naming every step that copies it."""
    steps: defaultdict[tuple[str, ...], list[str]] = defaultdict(list)
    for step_id, words in copied.items():
        steps[words].append(step_id)
    return [
        f"{_ids(ids)} {'copies' if len(ids) == 1 else 'copy'} '{' '.join(words)}' from a worked "
        "example, but the request does not mention it; write the step with the request's own words"
        for words, ids in steps.items()
    ]


def _fills_a_pattern(step: Step, plan: Plan, context: _Context) -> bool:
    """Another step with the same tool has the request's words where this one has them, and
    new words only where this one has new words."""

    def frame(s: Step) -> tuple[str, ...]:
        words = content_words(split_words(_literal(s.input)))
        return tuple(w if context.mentions(w) else "*" for w in words)

    mine = frame(step)
    return (
        "*" in mine
        and any(w != "*" for w in mine)
        and any(
            other.tool == step.tool and other.input != step.input and frame(other) == mine
            for other in plan.steps
            if other is not step
        )
    )


def _example_phrases(examples: Sequence[str]) -> tuple[_Phrase, ...]:
    """The distinctive phrases of the worked examples: runs of two or more content words, and
    one-word subjects with the word before their "about"."""
    phrases: list[_Phrase] = []
    for text in examples:
        for clause in re.split(r"[.,;:!?\n]", _literal(text)):
            tokens = split_words(clause)
            for start, end in _content_runs(tokens):
                marker = start - 1
                while marker >= 0 and tokens[marker] in _ARTICLES:
                    marker -= 1
                subject = marker >= 0 and tokens[marker] in _TOPIC_MARKERS
                run = tokens[start:end]
                if len(run) >= 2:
                    phrases.append(_Phrase((), run, subject))
                elif subject and marker >= 1 and is_content(tokens[marker - 1]):
                    phrases.append(_Phrase((tokens[marker - 1],), run))
    return tuple(sorted(dict.fromkeys(phrases), key=lambda p: not p.subject))  # subjects first


def _content_runs(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """(start, end) of every run of consecutive content words."""
    runs: list[tuple[int, int]] = []
    start = None
    for i, token in enumerate([*tokens, ""]):
        if token and is_content(token):
            start = i if start is None else start
        elif start is not None:
            runs.append((start, i))
            start = None
    return runs


def _translates_nothing(step: Step) -> bool:
    if _reads(step):
        return False
    params = {w for text in iter_strings(step.params) for w in split_words(text)}
    tokens = split_words(_literal(step.input))
    return all(t in params or _points_at_text(t) for t in content_words(tokens))


def _has_own_text(tokens: Sequence[str]) -> bool:
    """Whether a request says more than "translate (this) to French": text, or a task."""
    return not all(map(_points_at_text, content_words(tokens)))


def _points_at_text(token: str) -> bool:
    return is_language_name(token) or any(same_word(token, w) for w in _SOURCELESS)


def _has_combine_step(plan: Plan) -> bool:
    """Some step that nothing reads reads two or more steps and every step nothing else reads."""
    reads = {s.step_id: _reads(s) | set(s.depends_on) for s in plan.steps}
    for step in plan.steps:
        others = [s.step_id for s in plan.steps if s is not step]
        if len(reads[step.step_id]) < 2 or any(step.step_id in reads[o] for o in others):
            continue
        read_by_others = set().union(*(reads[o] for o in others))
        if all(o in reads[step.step_id] or o in read_by_others for o in others):
            return True
    return False


def _readers(plan: Plan, step_ids: set[str]) -> set[str]:
    """The steps that read any of ``step_ids``, directly or through other steps."""
    reads = {s.step_id: _reads(s) | set(s.depends_on) for s in plan.steps}
    found: set[str] = set()
    frontier = set(step_ids)
    while frontier:
        frontier = {sid for sid, names in reads.items() if names & frontier} - found
        found |= frontier
    return found


def _reads(step: Step) -> set[str]:
    """The names a step's input and params refer to (``{step1}``)."""
    texts = [step.input, *iter_strings(step.params)]
    return {ref.name for text in texts for ref in parse(text).refs}


def _literal(text: str) -> str:
    """A step input without its references: the text the step brings of its own."""
    return " ".join(s for s in parse(text).segments if isinstance(s, str))


def _normal(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".!?")


def _normal_value(value: Any) -> Any:
    if isinstance(value, str):
        return _normal(value)
    if isinstance(value, dict):
        return {k: _normal_value(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_normal_value(v) for v in value]
    return value


def _ids(step_ids: Iterable[str]) -> str:
    ids = list(dict.fromkeys(step_ids))
    return ids[0] if len(ids) == 1 else f"{', '.join(ids[:-1])} and {ids[-1]}"


def _flat(text: str) -> str:
    """Text on one line: a problem is one line of a repair message."""
    return " ".join(text.split())


def _show(text: str, limit: int = 60) -> str:
    text = _flat(text)
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _show_params(params: dict[str, Any]) -> str:
    if not params:
        return ""
    shown = ", ".join(f"{_flat(k)}={_flat(str(v))}" for k, v in params.items())
    return f", params {shown}"
