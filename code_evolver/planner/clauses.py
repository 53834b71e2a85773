"""The clause splitter: a request cut into its parts, deterministically, before any model.

A 135M model cannot write a whole plan, and even a good one copies worked examples; but the
shape of a request is mostly in its words. This module finds that shape:

* **source text** the request carries: in quotes (``translate 'thank you' into French``), after
  a colon (``summarize this: ...``, ``sort these lines:`` and the lines below), or after
  ``the following``. It is taken out before splitting, so its own commas and full stops do not
  cut the request, and it is handed to the clause that works on it;
* **clauses**: the instructions, cut at ``;``, sentence ends, ``then`` / ``also`` (and their
  French, Spanish, German, Italian and Portuguese forms), and at ``and`` or a comma when a new
  instruction starts after it (``write a poem about the sea and translate it``), but not inside
  one (``a story about cats and dogs``);
* **items**: one instruction over several things (``3 jokes about cats, dogs and birds``,
  ``for each of Paris, Rome and Berlin, ...``, ``a poem about the sun, one about the moon``,
  ``a haiku about each season``) becomes one clause per item.

What each clause does (its tool) and what it reads is decided in ``planner.decompose``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from code_evolver.planner.clause_words import (
    ALSO,
    ALSO_WORDS,
    AND,
    FOREIGN_GENRES,
    GENRES,
    STRONG_WRITERS,
    THEN,
    TRANSFORM_VERBS,
    VERB,
)
from code_evolver.planner.languages import canonical

_POLITE = (
    r"(?:please\s+|pls\s+|kindly\s+|(?:can|could|would|will)\s+you\s+(?:please\s+)?|"
    r"i\s+(?:need|want|would\s+like)\s+(?:you\s+)?(?:to\s+)?|i'?d\s+like\s+(?:you\s+)?(?:to\s+)?|"
    r"let'?s\s+|bitte\s+|(?:hey|hi|hello|ok(?:ay)?|so|now|yo|alright|um+)\b\s*[,!:]?\s*|"
    r"real\s+quick\b\s*[,!:]?\s*|quick(?:ly)?\s*[,:]\s*|"
    rf"(?:{ALSO_WORDS}|and)\s*,?\s+)*"
)
STARTS_INSTRUCTION = re.compile(rf"^{_POLITE}(?:{VERB})\b", re.I)
_ITEM_START = re.compile(
    r"^(?:(?:and\s+)?(?:one|another|uno|una|otro|otra|outro|outra|un|une|einen|eine|eins|ein)\s+"
    r"(?:(?:autre|other|andere[nrs]?|altro|altra)\s+)?"
    r"(?:about|on|for|against|sobre|de|sur|über|ueber|su|sul|sulla|sullo|sui|sugli|sulle|contra|"
    r"contre|gegen|für|pour|para|over)\b)",
    re.I,
)
_MARKER = r"(?:\d[).]|\(\d\)|\(?[a-e]\)|step\s*\d+\s*[:.)]?)"
"""A numbered or lettered step: ``1.``, ``2)``, ``(3)``, ``(a)``, ``b)``."""
_STEPS_FOLLOW = re.compile(rf"^[^:\n]{{0,80}}:\s*(?={_MARKER}\s)", re.I)
_STEP_LINE = re.compile(rf"\s*\n\s*(?={_MARKER}\s)")


def _steps_only(text: str) -> str:
    """``Please do these independently:\n(a) summarize ...\n(b) write ...``: the lead-in goes
    (it introduces steps, not a text) and the steps are one line, cut at their markers."""
    match = _STEPS_FOLLOW.match(text)
    if match is None:
        return text
    steps = text[match.end() :]
    markers = re.findall(rf"(?:^|\s){_MARKER}\s+(\S+)", steps)
    if len(markers) < 2 or not all(re.match(rf"(?:{VERB})\b", m, re.I) for m in markers):
        return text  # "summarize this: (a) is fine" is a text
    return _STEP_LINE.sub(" ", steps)


_VERB_THEN = re.compile(
    r"\b(?P<verb>vat|fass|fasse|vergleiche|vergleich|[üu]bersetze|z[äa]hle|vertaal|tel|f[üu]ge|zeg|"
    r"sag|schreib|schrijf)"
    r"(?P<object>(?:\s+(?!dann\b|danach\b|daarna\b|dan\b)\w+){0,3}?)"
    r"\s+(?P<then>dann|danach|daarna|dan)\b",
    re.I,
)
"""German and Dutch put "then" after the verb ("vergleiche dann die beiden", "vat het daarna
samen"); it is moved before the verb, where the cut between clauses belongs."""

# Where the instruction part is cut, with what the cut says about the two sides.
_CUTS = re.compile(
    rf"(?P<semi>\s*;\s*)|(?P<numbered>\s*,?\s+(?={_MARKER}\s))"
    rf"|(?P<stop>(?<=[.!?])\s+(?=\S))"
    rf"|(?P<then>\s*,?\s*(?:\b(?:{AND})\s+)?,?\s*\b(?:{THEN})\s*,?\s+)"
    rf"|(?P<also>\s*,?\s*(?:\b(?:{AND})\s+)?,?\s*\b(?:{ALSO})\s*,\s*|\s*[,.]\s*\b(?:{ALSO})\s+"
    rf"|\s*,?\s+(?:{AND})\s+(?:{ALSO})\s+)"
    rf"|(?P<and>\s*,?\s+\b(?:{AND})\s+,?\s*|\s*,\s*|\s+plus\s+(?=(?:its|the|an?)\s))",
    re.I,
)
_CONNECTIVE = re.compile(rf"(?:{ALSO}|{THEN}|{AND})", re.I)
_JOINERS = {"semi": "also", "stop": "also", "numbered": "next"}
_QUOTE_PAIRS = {'"': '"', "“": "”", "«": "»", "„": "“", "'": "'", "‘": "’"}
_QUOTE = re.compile(
    r"""(?<![\w])(?:"(?P<d>[^"\n]+)"|“(?P<c>[^”\n]+)”|«\s*(?P<g>[^»\n]+?)\s*»|„(?P<l>[^“"\n]+)[“"]|"""
    r"""‚(?P<k>[^‘'\n]+)[‘']|"""
    r"""'(?P<s>[^'\n]*?[^\s'])'(?![\w])|‘(?P<t>[^’\n]+)’)"""
)
_HOLE = "\x00{}\x00"
_HOLE_RE = re.compile(r"\x00(\d+)\x00")
# The head of "X: text" asks for work on the text after the colon when it says so.
_NEEDS_SOURCE = re.compile(
    rf"\b(?:{TRANSFORM_VERBS}|this|these|those|the\s+following|following|text|sentence|"
    r"phrase|paragraph|review|reviews|lines|words|article|email|message|passage|notes|gist|"
    r"summary|tl;?dr|tldr|recap|word\s+count|caps|upper\s*case|translation|alphabetical|"
    r"folgend\w*|diese\w*|siguiente|suivant\w*|ce\s+texte|ces|este\s+texto|estos|estas|"
    r"quest[oaie])\b",
    re.I,
)
_THIS = re.compile(
    r"\b(?:this|these|the\s+following|following|folgend\w*|diese\w*|quest[oaie]|este|esta|"
    r"estos|estas|ce|cette|ces)\b",
    re.I,
)
_EACH_IN = re.compile(
    r",?\s+each\s+(?:in|into)\s+(?P<languages>[^\W\d_]+(?:\s*(?:,|and)\s*[^\W\d_]+)*)"
    r"\s*[.!?]?$",
    re.I,
)
# Something the tools make, named instead of asked for: "... and its word count".
_DELIVERABLE = re.compile(
    r"^(?:both\s+)?(?:its|their|a|an|the)\s+(?:[\w-]+\s+){0,2}?(?:word\s+count|line\s+count|"
    r"number\s+of\s+(?:words|lines)|summary|tl;?dr|tldr|translation|uppercase\s+version|"
    r"upper-?case\s+version|all-caps\s+version|sorted\s+version|unique\s+words|version)\b",
    re.I,
)
_JOINS_OBJECTS = re.compile(
    r"^(?:combine|merge|join|compare|contrast|put|show|display|list|stitch)\b", re.I
)
"""A verb whose object is several things: ``and the translation`` is its second object."""
_DECIDES = re.compile(r"^(?:tell\s+me|say|let\s+me\s+know)\s+(?:which|whether|if)\b", re.I)
_CHOOSES_ONE = re.compile(r"^(?:compare|contrast|rank|rate|weigh|judge)\b", re.I)
_BOTH_OF = re.compile(r"\b(?:of|in|for)\s+both\s+(?:the\s+)?\w+$", re.I)
_FIRST_LABEL = re.compile(
    r"(?<=[.!?:])\s*(?:first|[A]|(?:review|text|paragraph|blurb|email|option|version|note|item|"
    r"message|comment|story|poem)\s+(?:A|1|one))$",
    re.I,
)
_FOLLOWING = re.compile(r"\bthe\s+following\b(?:\s+(?!(?:two|three|four|five|\d+)\b)\w+)?\s*", re.I)
"""``the following`` and its noun, but not a count: ``the following two emails`` keeps two."""


@dataclass(frozen=True)
class Clause:
    """One instruction of the request."""

    text: str
    """The instruction in the user's words (quotes restored), without polite lead-ins."""
    source: str | None = None
    """Text the request gave this clause to work on (quoted or after a colon), exactly."""
    joiner: str = ""
    """How it was joined to the clause before: "", "then", "next" (a numbered step), "also",
    "and", "with" (another
    thing made of the same input: "its word count and an uppercase version") or "same" (the
    same work on another text: "the words in 'X' and in 'Y'")."""
    item_of: int | None = None
    """Set for the items one instruction was expanded into: the index of the first item."""


@dataclass(frozen=True)
class Parts:
    """A request cut into clauses; ``source`` is text given for the request as a whole."""

    clauses: tuple[Clause, ...]
    quotes: tuple[str, ...]


_BELOW = re.compile(r"^(?P<head>.+?)\n[ \t]*\n(?P<body>.+)$", re.S)
_POINTS_BELOW = re.compile(r"\b(?:below|underneath|as\s+follows)\b", re.I)


def split_request(request: str) -> Parts:
    """Cut ``request`` into clauses (see the module docstring); never raises."""
    below = _BELOW.match(request.strip())
    if below and _POINTS_BELOW.search(below["head"]):  # "summarize the text below ...\n\nTEXT"
        parts = split_request(below["head"])
        if parts.clauses and all(c.source is None for c in parts.clauses):
            at = next((i for i, c in enumerate(parts.clauses) if _POINTS_BELOW.search(c.text)), 0)
            clause = parts.clauses[at]
            given = Clause(clause.text, below["body"].strip(), clause.joiner, clause.item_of)
            return Parts((*parts.clauses[:at], given, *parts.clauses[at + 1 :]), parts.quotes)
    # NUL marks the holes quotes leave while the request is cut (_HOLE): one typed in the
    # request itself would name a quote that is not there.
    text = re.sub(r"\btl;\s?dr\b", "tldr", request.strip().replace("\x00", " "), flags=re.I)
    quotes: list[str] = []

    def hole(match: re.Match[str]) -> str:
        quotes.append(next(g for g in match.groups() if g is not None))
        return _HOLE.format(len(quotes) - 1)

    # "a haiku and a limerick, each in French and Spanish": a translation of each
    # (one language the writer can write in directly.)
    each = _EACH_IN.search(text)
    named = re.split(r"\s*,\s*|\s+and\s+", each["languages"].strip()) if each else []
    if each and len(named) > 1 and all(canonical(word) for word in named):
        text = f"{text[: each.start()]}, then translate each into {each['languages']}"
    if len(re.findall(r"\bstep\s*\d+\s*:", text, re.I)) >= 2:  # "step 1: ... step 2: ..."
        text = re.sub(r"\bstep\s*(\d+)\s*:\s*", r"\1) ", text, flags=re.I)
    text = _steps_only(text)
    if len(_ORDINAL_STEP.findall(text)) >= 2:  # "first ..., second ..., third ..."
        count = iter(range(1, 10))
        text = _ORDINAL_STEP.sub(lambda _: f"{next(count)}) ", text)
    head, tail = _colon_source(text)
    head = _VERB_THEN.sub(r"\g<then> \g<verb>\g<object>", head)
    head = _QUOTE.sub(hole, head)
    head = " ".join(head.split())
    head_clauses, trailing = _cut(head)
    clauses = list(head_clauses)
    if tail is not None:
        tail_text, after = _split_tail(tail)
        if _NEEDS_SOURCE.search(_FOLLOWING.sub("", head) or head) or not clauses:
            clauses = _give_source(clauses, tail_text)
        else:  # "I need two things: a slogan ... and a description ..."
            joined = _QUOTE.sub(hole, _join(clauses[-1].text, tail_text))
            clauses = [*clauses[:-1], *_cut(joined)[0]]
        if after:
            joiner, after = after.split("\x01", 1)
            more, _ = _cut(" ".join(_QUOTE.sub(hole, after).split()))
            clauses += [Clause(c.text, c.source, c.joiner or joiner) for c in more]
    del trailing
    restored = [_restore(c, quotes) for c in clauses if c.text or c.source]
    if not restored and request.strip():  # "hello" alone is what was said, not a filler
        restored = [Clause(" ".join(request.split()).strip(" .!?"))]
    return Parts(tuple(_without_lead_ins(restored)), tuple(quotes))


_LEAD_IN = re.compile(
    r"^(?:take|use|here\s+is|here'?s|consider|given|with)\s+(?:this|the\s+following|the|my)?"
    r"\s*(?:text|sentence|paragraph|passage|message|note|line)?\s*$",
    re.I,
)
"""``take this text, translate it ...``: a clause that only introduces the text."""


def _without_lead_ins(clauses: list[Clause]) -> list[Clause]:
    """Lead-ins dropped; the text one was given goes to the clause after it."""
    if clauses and clauses[0].joiner:  # the first clause was a filler ("hey, real quick")
        clauses = [Clause(clauses[0].text, clauses[0].source, "", clauses[0].item_of), *clauses[1:]]
    kept: list[Clause] = []
    lead_in: Clause | None = None
    for clause in clauses:
        if _LEAD_IN.match(clause.text) and len(clauses) > 1:
            lead_in = clause
            continue
        if lead_in is not None:  # the clause takes the lead-in's place and its text
            source = clause.source if clause.source is not None else lead_in.source
            clause = Clause(clause.text, source, lead_in.joiner, clause.item_of)
            lead_in = None
        kept.append(clause)
    return kept or clauses


def _join(head: str, tail: str) -> str:
    head = re.sub(r"\b(?:two|three|four|five|\d+)\s+things\b", "", head, flags=re.I).strip()
    return f"{head} {tail}".strip()


def _colon_source(text: str) -> tuple[str, str | None]:
    """Split ``head: source``; the colon must come early and outside quotes."""
    lines = text.split("\n", 1)
    first = lines[0]
    masked = _QUOTE.sub(lambda m: "_" * len(m.group(0)), first)
    colon = masked.find(":")
    if colon < 0 or colon > 160:
        if len(lines) > 1 and lines[1].strip() and _NEEDS_SOURCE.search(first):
            return first.rstrip(" :"), lines[1].strip("\n")
        return text, None
    head = first[:colon].strip()
    tail = first[colon + 1 :]
    if re.search(rf"(?:^|[\s.,;])(?:{ALSO}|{THEN})$", head, re.I):  # "... Also: translate 'x'"
        return _colon_source(f"{text[:colon]};{text[colon + 1 :]}")
    if label := _FIRST_LABEL.search(head):  # "... merge them. First: ..., Second: ..."
        head, tail = head[: label.start()].rstrip(), f"{label.group(0)}:{tail}"
    if len(lines) > 1:
        tail = f"{tail}\n{lines[1]}"
    tail = tail.strip()
    if not tail or (re.match(r"^\d", tail) and re.search(r"\d$", head)):  # "at 10:30"
        return text, None
    return head, tail


def _split_tail(tail: str) -> tuple[str, str]:
    """The source text, and an instruction that follows it (``..., then translate it``)."""
    masked = _QUOTE.sub(lambda m: "_" * len(m.group(0)), tail)
    after = re.compile(
        rf"(?:[,;.]\s*|\s+)(?:and\s+)?(?:(?:{THEN})\s*,?\s+|(?:{ALSO})\s*,?\s+)"
        rf"(?={_POLITE}(?:{VERB})\b)",
        re.I,
    )
    found = None
    for match in after.finditer(masked):
        rest = masked[match.end() :]
        explicit = re.search(rf"\b(?:{ALSO})\b", match.group(0), re.I)
        refers = re.search(r"\b(?:it|this|that|them|the\s+\w+)\b", rest, re.I)
        if len(rest) < 120 and (refers or explicit):
            found = match
            break
    if found is None:
        return _unquote(tail.strip()), ""
    joiner = "also" if re.search(rf"\b(?:{ALSO})\b", found.group(0), re.I) else "then"
    source = _unquote(tail[: found.start()].strip(" \t\n—–-"))
    return source, f"{joiner}\x01{tail[found.end() :].strip()}"


def _unquote(text: str) -> str:
    if len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1] and text.count(text[0]) <= 2:
        return text[1:-1].strip()
    return text


def _give_source(clauses: list[Clause], source: str) -> list[Clause]:
    """The colon's text goes to the first clause that asks for text ("the following", "this")."""
    if not clauses:
        return [Clause("", source)]
    index = next((i for i, c in enumerate(clauses) if _THIS.search(c.text)), 0)
    clause = clauses[index]
    cleaned = _FOLLOWING.sub("", clause.text).strip(" ,") if "follow" in clause.text else None
    given = Clause(cleaned or clause.text, source, clause.joiner)
    return [*clauses[:index], given, *clauses[index + 1 :]]


def _cut(text: str) -> tuple[list[Clause], str]:
    """The instruction part cut into clauses."""
    text = text.strip().rstrip(" .!").strip()
    if not text:
        return [], ""
    pieces: list[tuple[str, str]] = []  # (joiner, text)
    position, joiner = 0, ""
    for match in _CUTS.finditer(text):
        kind = match.lastgroup or "and"
        rest = text[match.end() :]
        if kind == "and" and not (
            STARTS_INSTRUCTION.match(rest)
            or _ITEM_START.match(rest)
            or _starts_genre(rest)
            or re.match(r"^\x00\d+\x00\s+(?:in)?to\s", rest)  # "and 'close the door' to French"
            or _DELIVERABLE.match(rest)  # "and its word count"
            or re.match(r"^(?:in|of|for)\s+\x00\d+\x00", rest)  # "in 'X' and in 'Y'"
            or _QUESTION.match(rest)  # "how many words and how many lines"
        ):
            continue  # "cats and dogs": not a new instruction
        if kind == "stop" and (
            not (rest[:1].isupper() or STARTS_INSTRUCTION.match(rest) or _QUESTION.match(rest))
            or re.search(rf"(?:^|\s){_MARKER}$|(?:^|\s)\d+\.$", text[: match.start()])
        ):
            continue  # "e.g. cats", "1. write": no new sentence; "matters. how many ...": one
        pieces.append((joiner, text[position : match.start()]))
        position, joiner = match.end(), _JOINERS.get(kind, kind)
    pieces.append((joiner, text[position:]))
    clauses = [Clause(_clean(p), None, j) for j, p in pieces if _clean(p)]
    clauses = [c for c in clauses if not _CONNECTIVE.fullmatch(c.text)]
    return _merge_fragments(clauses), ""


def _starts_genre(text: str) -> bool:
    """``a limerick about cheese``, ``een gedicht over``: another thing to write."""
    text = re.sub(rf"^{_POLITE}", "", text, flags=re.I)
    return bool(
        re.match(rf"^(?:a|an|one|another)\s+(?:[\w-]+\s+){{0,2}}(?:{GENRES})s?\b", text, re.I)
        or re.match(
            rf"^(?:un|une|uno|una|um|uma|ein|eine|einen|een)\s+(?:\w+\s+)?(?:{FOREIGN_GENRES})\b",
            text,
            re.I,
        )
        or re.match(r"^(?:a|an)\s+(?:[\w-]+\s+){1,3}(?:about|on|against)\s", text, re.I)
    )


_QUESTION = re.compile(
    r"^(?:how\s+(?:many|long|much)|what(?:'s|\s+is|\s+are|\s+were)|which\s+(?:one|is))\b", re.I
)
"""A question that asks for work: ``how many words is the above?``."""
_ORDINAL_STEP = re.compile(
    rf"(?:^|(?<=[\s,;]))(?:first(?:ly)?|second(?:ly)?|third(?:ly)?|fourth(?:ly)?|fifth(?:ly)?)"
    rf",?\s+(?=(?:{VERB})\b)",
    re.I,
)
"""``first write X, second make it Y, third count Z``: numbered steps in words."""
_THANKS = re.compile(
    r"^(?:thanks?(?:\s+(?:you|a\s+lot|so\s+much))?|thx|ty|cheers|pls|please)[\s!.]*$", re.I
)


def _clean(text: str) -> str:
    text = re.sub(rf"^{_MARKER}\s*", "", text.strip(" ,.;:!-–—"))  # "2) summarize it", "(b) ..."
    if _THANKS.match(text):  # "... to german. thanks!"
        return ""
    text = re.sub(r"[.!,]?\s*\b(?:thanks?(?:\s+you)?|thx|cheers)[\s!.]*$", "", text, flags=re.I)
    text = re.sub(rf"^{_POLITE}", "", text, flags=re.I).strip(" ,")
    return re.sub(rf"^both\s+(?=(?:{VERB})\b)", "", text, flags=re.I)


def _merge_fragments(clauses: list[Clause]) -> list[Clause]:
    """A piece that does not start an instruction belongs to the one before, unless it is an
    item (``one about the moon``, ``a limerick about cheese``)."""
    merged: list[Clause] = []
    for clause in clauses:
        starts = (
            STARTS_INSTRUCTION.match(clause.text)
            or _ITEM_START.match(clause.text)
            or _starts_genre(clause.text)
            or "\x00" in clause.text[:2]
        )
        joins_two = merged and (  # "combine A and the B", "count the words of both A and the B"
            _JOINS_OBJECTS.match(merged[-1].text) or _BOTH_OF.search(merged[-1].text)
        )
        if _DELIVERABLE.match(clause.text) and merged and clause.joiner == "and" and not joins_two:
            merged.append(Clause(clause.text, None, "with"))  # reads what the one before reads
            continue
        if re.match(r"^(?:in|of|for)\s+\x00\d+\x00\s*$", clause.text) and merged:
            merged.append(Clause(clause.text, None, "same"))  # the same work on another text
            continue
        if merged and _DECIDES.match(clause.text) and _CHOOSES_ONE.match(merged[-1].text):
            last = merged[-1]  # "compare the two and tell me which is better": one step
            merged[-1] = Clause(f"{last.text} and {clause.text}", last.source, last.joiner)
            continue
        if merged and not starts and clause.joiner in ("and", ""):
            last = merged[-1]
            merged[-1] = Clause(f"{last.text}, {clause.text}", last.source, last.joiner)
        else:
            merged.append(clause)
    return merged


def _restore(clause: Clause, quotes: list[str]) -> Clause:
    """Put quoted text back; a transform's only quote becomes its source."""
    holes = [int(n) for n in _HOLE_RE.findall(clause.text)]
    if clause.source is None and len(holes) == 1 and _wants_quote(clause.text):
        text = _HOLE_RE.sub("", clause.text)
        text = re.sub(r"\b(?:the\s+(?:phrase|sentence|text|word|words))\s*$", "", text.strip())
        return Clause(" ".join(text.split()).strip(" ,:-–—"), quotes[holes[0]], clause.joiner)
    text = _HOLE_RE.sub(lambda m: f"'{quotes[int(m.group(1))]}'", clause.text)
    return Clause(text, clause.source, clause.joiner, clause.item_of)


def _wants_quote(text: str) -> bool:
    """Whether a quote in this clause is text to work on (not a title to write about)."""
    bare = _HOLE_RE.sub("", text).strip(" -–—,:")
    if re.match(rf"^(?:{STRONG_WRITERS})\b", bare, re.I):
        return False
    into = re.search(r"\b(?:in|into|to)\s+([^\W\d_]+)\W*$", bare)
    if into and canonical(into.group(1)):  # "what's 'good morning' in Dutch?"
        return True
    return bool(
        re.search(rf"\b(?:{TRANSFORM_VERBS}|how\s+many|words?|lines?|caps|capitals)\b", bare, re.I)
        or re.match(r"^(?:in|into|to)\s", bare, re.I)
        or re.search(r"\b(?:in|of)\s*$", bare, re.I)
    )
