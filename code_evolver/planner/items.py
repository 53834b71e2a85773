"""Items: one instruction over several things becomes one clause per thing.

``3 jokes about cats, dogs and birds``, ``for each of Paris, Rome and Berlin, write ...``,
``a poem about the sun, one about the moon``, ``a haiku about each season``, ``a slogan in
three tones (playful, serious, poetic)``, and the items that follow a count (``two haikus, one
about rain and one about snow``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from code_evolver.planner.clause_words import FOREIGN_GENRES, GENERATE_VERBS, GENRES
from code_evolver.planner.clauses import STARTS_INSTRUCTION, Clause
from code_evolver.planner.tool_words import WRITER, tool_for

MAX_ITEMS = 12

NUMBERS = {
    "a couple of": 2, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "a few": 3, "several": 3, "dos": 2, "tres": 3,
    "cuatro": 4, "cinco": 5, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "zwei": 2,
    "drei": 3, "vier": 4, "fünf": 5, "due": 2, "tre": 3, "duas": 2, "três": 3,
}  # fmt: skip
_NUMBER = rf"(?P<n>\d+|{'|'.join(sorted(NUMBERS, key=len, reverse=True))})"
_ABOUT = (
    r"about|on|for|of|against|featuring|sobre|sur|über|ueber|su|sul|sulla|sullo|sui|sugli|sulle|"
    r"de|pour|para|für|contra|contre|gegen|over"
)
_COUNTED = re.compile(
    rf"^(?P<verb>(?:{GENERATE_VERBS})(?:\s+(?:me|us|up|out|down|mir|uns|moi|nous|mi|ci))?"
    rf"(?:\s+(?:a\s+)?(?:list|set)\s+of)?)"
    rf"\s+{_NUMBER}\s+(?P<thing>(?:[\w'-]+\s+){{0,3}}?[\w'-]+?)"
    rf"(?:\s+(?P<prep>{_ABOUT})\s+(?P<topics>.+))?$",
    re.I,
)
_FOR_EACH = re.compile(
    r"^(?:for|para|pour|für)\s+(?:each|every|cada\s+un[oa]|chacun\w*|jede\w*)\s+(?:of\s+)?"
    r"(?:(?:these|the\s+following|those)\s+\w+\s*)?[-:–—]?\s*(?P<items>.+)\s*[-:–—,]\s*"
    rf"(?P<rest>(?:{GENERATE_VERBS})\b.+)$",
    re.I,
)
_IN_N_KINDS = re.compile(
    rf"^(?P<head>.+?)\s+in\s+{_NUMBER}\s+(?P<kind>[a-z]+)\s*\((?P<items>[^)]+)\)(?P<rest>.*)$", re.I
)
_FOR_EACH_ALONE = re.compile(
    r"^(?:for|para|pour|für)\s+(?:each|every|cada|chaque|jede\w*)\s+(?:of\s+)?[^,]+(?:,[^,]+)*$",
    re.I,
)
_EACH_OF_THESE = re.compile(
    r"\b(?:each|every(?:\s+one)?|all)\s+of\s+(?:these|the\s+following|those)(?:\s+\w+)?\s*$"
    r"|\bciascun[oa]\s+di\s+quest\w+(?:\s+\w+)?\s*$|\bcada\s+un[oa]\s+de\s+est\w+(?:\s+\w+)?\s*$"
    r"|\bchacun\w*\s+de\s+ces(?:\s+\w+)?\s*$",
    re.I,
)
_ABOUT_EACH_OF = re.compile(
    r"^(?P<head>.+?\b(?:about|for|on))\s+(?:each|every(?:\s+one)?)\s+of\s+"
    r"(?:(?:these|the\s+following|those)\s*(?:\w+\s*)?)?:?\s*(?P<items>.+)$",
    re.I,
)
_ONE = (
    r"(?:one|another|uno|una|otro|otra|outro|outra|un|une|einen|eine|eins|ein)"
    r"(?:\s+(?:autre|other|andere[nrs]?|altro|altra))?"
)
_ONE_LIST = re.compile(r"\bone\s+per\s+line\b|\bin\s+one\s+list\b|\bas\s+a\s+list\b", re.I)
_SEASONS = ("spring", "summer", "autumn", "winter")


def expand_items(clauses: Sequence[Clause]) -> list[Clause]:
    """One instruction over several things becomes one clause per thing."""
    expanded: list[Clause] = []
    pending: Clause | None = None  # "for each of A, B and C" cut off from its instruction
    for clause in clauses:
        if pending is not None:
            clause = Clause(f"{pending.text}, {clause.text}", clause.source, pending.joiner)
            pending = None
        elif (
            _FOR_EACH_ALONE.match(clause.text)
            and clause.source is None
            and not _FOR_EACH.match(_unbracketed(clause.text))  # its instruction is here
        ):
            pending = clause
            continue
        if clause.source is not None and (match := _EACH_OF_THESE.search(clause.text)):
            items = _listed(clause.source)
            if 2 <= len(items) <= MAX_ITEMS:
                head = clause.text[: match.start()].rstrip()
                texts = tool_for(Clause(head)) != (WRITER, True)  # "summarize each of these"
                expanded += [
                    Clause(head, item, clause.joiner if i == 0 else "and")
                    if texts
                    else Clause(f"{head} {item}", None, clause.joiner if i == 0 else "and")
                    for i, item in enumerate(items)
                ]
                continue
        if expanded and (shared := _SHARED_TOPIC.match(clause.text)):  # "..., both about snow"
            clause = Clause(f"{shared['main']} {shared['topic']}", None, clause.joiner, 1)
            before = expanded[-1]
            if not re.search(rf"\b(?:{_ABOUT})\s", before.text, re.I):
                expanded[-1] = Clause(
                    f"{before.text} {shared['topic']}", before.source, before.joiner, 1
                )
        if expanded and clause.source is None and _is_item(clause.text):
            previous = expanded[-1]
            like = _like(previous.text, clause.text)
            expanded.append(Clause(like, None, clause.joiner or "and", 1))
            continue
        expanded += _items(clause)
    if pending is not None:
        expanded.append(pending)
    return _count_with_items(expanded)


_SHARED_TOPIC = re.compile(
    r"^(?P<main>.+?),?\s+(?:both|all\s+(?:two|three)|each)\s+(?P<topic>(?:about|on|for)\s+.+)$",
    re.I,
)
"""``a haiku and a limerick, both about snow``: the topic of each item, not a reference."""


_ANOTHER = re.compile(r"^(?:and\s+)?(?:a\s+second|another|one\s+more)\s+one\b(?P<rest>.*)$", re.I)
"""``then a second one in a totally different tone``: the same thing again, differently."""


def _is_item(text: str) -> bool:
    """``one about fog``, ``make one about fog``, ``a limerick about cheese``."""
    if _ANOTHER.match(text):
        return True
    text = re.sub(rf"^(?:{GENERATE_VERBS})(?:\s+me)?\s+(?=(?:one|another)\s)", "", text, flags=re.I)
    return bool(
        re.match(
            rf"^(?:and\s+)?{_ONE}\s+(?:{_ABOUT})\b|^(?:a|an)\s+(?:\w+\s+){{0,2}}(?:{GENRES})s?\b"
            rf"|^(?:un|une|uno|una|um|uma|ein|eine|einen|een)\s+(?:\w+\s+)?(?:{FOREIGN_GENRES})\b",
            text,
            re.I,
        )
    )


def _like(previous: str, item: str) -> str:
    """``one about the moon`` after ``write a poem about the sun``: ``write a poem about the
    moon``; ``a limerick about a cat`` after ``give me a haiku ...``: ``give me a limerick ...``."""
    previous = re.sub(r"\s*\(number \d+ of \d+[^)]*\)", "", previous)
    if again := _ANOTHER.match(item):
        how = again["rest"].strip(" ,")
        return f"{previous.rstrip(' .')} (another one{', ' + how if how else ''})"
    item = re.sub(r"^and\s+", "", item, flags=re.I)
    item = re.sub(rf"^(?:{GENERATE_VERBS})(?:\s+me)?\s+(?=(?:one|another)\s)", "", item, flags=re.I)
    previous = re.sub(r"\s*\(number \d+ of \d+[^)]*\)", "", previous)  # a counted copy
    if match := re.match(rf"^{_ONE}\s+(?P<prep>{_ABOUT})\s+(?P<topic>.+)$", item, re.I):
        head = re.match(rf"^(?P<head>.*?)\s+(?:{_ABOUT})\s", previous, re.I)
        base = head["head"] if head else previous.rstrip(" .")
        return f"{base} {match['prep']} {match['topic']}"
    verb = re.match(rf"^(?P<verb>(?:{GENERATE_VERBS})(?:\s+me)?)\b", previous, re.I)
    return f"{verb['verb']} {item}" if verb else item


def _items(clause: Clause) -> list[Clause]:
    if clause.source is not None or tool_for(clause)[0] != WRITER:
        return [clause]
    text = _unbracketed(clause.text)
    if (match := _IN_N_KINDS.match(text)) and (items := split_list(match["items"])):
        raw = match["n"].lower()
        if len(items) == (int(raw) if raw.isdigit() else NUMBERS[raw]):  # "in 3 tones (a, b, c)"
            kind = singular(match["kind"])
            return [
                Clause(
                    f"{match['head']} ({item} {kind}){match['rest']}",
                    None,
                    clause.joiner if i == 0 else "and",
                )
                for i, item in enumerate(items)
            ]
    if match := _ABOUT_EACH_OF.match(text):  # "a joke about each of: cats, dogs, parrots"
        items = split_list(match["items"])
        if 2 <= len(items) <= MAX_ITEMS:
            return [
                Clause(f"{match['head']} {item}", None, clause.joiner if i == 0 else "and")
                for i, item in enumerate(items)
            ]
    if (match := _FOR_EACH.match(text)) and STARTS_INSTRUCTION.match(match["rest"]):
        items = split_list(match["items"])
        if 2 <= len(items) <= MAX_ITEMS:
            return [
                Clause(f"{match['rest']} ({item})", None, clause.joiner if i == 0 else "and")
                for i, item in enumerate(items)
            ]
    if match := re.match(r"^(?P<rest>.+?)\s+for\s+each\s+of\s+(?P<items>.+)$", text, re.I):
        items = split_list(match["items"])
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
    if made := _kinds_of_one(text, clause.joiner):  # "two emails, one formal and one casual"
        return made
    if match := _COUNTED.match(text):
        raw = match["n"].lower()
        count = int(raw) if raw.isdigit() else NUMBERS[raw]
        topics = split_list(match["topics"]) if match["topics"] else []
        thing = re.sub(
            r"^(?:(?:different|distinct|separate|unique|new)\s+)+",
            "",
            singular(match["thing"]),
            flags=re.I,
        )
        verb = match["verb"].strip()
        if re.search(r"\b(?:list|table|series|set)\s+(?:of\s+)?$", verb, re.I) or _ONE_LIST.search(
            text
        ):
            return [clause]  # "a list of 10 vegetables" is one list
        if 2 <= count <= MAX_ITEMS and re.search(r"(?:s|e|i|en)\b", match["thing"]):
            prep = f" {match['prep']}" if match["prep"] else ""
            if match["prep"]:  # "über Katzen, über Hunde und über Vögel": the preposition once
                again = re.compile(rf"^{re.escape(match['prep'])}\s+", re.I)
                topics = [again.sub("", t) for t in topics]
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
    if match := re.match(  # "a slogan for a bakery, a gym and a bookstore": one for each
        rf"^(?P<head>(?:{GENERATE_VERBS})(?:\s+me)?\s+(?:a|an|one)\s+(?:\w+\s+){{0,2}}"
        rf"(?:{GENRES}))\s+(?P<prep>about|for|on)\s+(?P<topics>.+)$",
        text,
        re.I,
    ):
        topics = split_list(match["topics"])
        if 2 <= len(topics) <= MAX_ITEMS and all(
            re.match(r"^(?:a|an|the|my|our)\s+\S+(?:\s+\S+)?$", t, re.I) for t in topics
        ):
            return [
                Clause(
                    f"{match['head']} {match['prep']} {t}", None, clause.joiner if i == 0 else "and"
                )
                for i, t in enumerate(topics)
            ]
    if match := re.match(
        rf"^(?P<head>(?:{GENERATE_VERBS})(?:\s+me)?\s+(?:\w+\s+){{0,2}}(?:{GENRES})s)\s+"
        rf"(?P<prep>about|for|on)\s+(?P<topics>.+)$",
        text,
        re.I,
    ):
        topics = split_list(match["topics"])
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


_KINDS = re.compile(
    rf"^(?P<main>.*?\b{_NUMBER}\s+(?P<things>(?:[\w'-]+\s+){{0,2}}?[\w'-]+s)\b.*?),\s*"
    r"(?P<kinds>(?:one|an?)\s+[\w-]+(?:\s*,\s*(?:one|an?)\s+[\w-]+)*\s*,?\s*and\s+"
    r"(?:one|an?|the\s+other)\s+[\w-]+)\s*[.!]?$",
    re.I,
)


def _kinds_of_one(text: str, joiner: str) -> list[Clause]:
    """``write two emails declining X, one formal and one casual``: an email of each kind."""
    match = _KINDS.match(text)
    if match is None:
        return []
    kinds = re.findall(r"(?:one|an?|the\s+other)\s+([\w-]+)", match["kinds"], re.I)
    raw = match["n"].lower()
    count = int(raw) if raw.isdigit() else NUMBERS[raw]
    if len(kinds) != count or any(re.fullmatch(_ABOUT, kind, re.I) for kind in kinds):
        return []
    thing = singular(match["things"])  # "short bios": "short bio"
    one = re.sub(
        rf"\b{re.escape(match['n'])}\s+{re.escape(match['things'])}\b",
        f"{_article(thing)} {thing}",
        match["main"],
        count=1,
    )
    return [
        Clause(f"{one} ({kind})", None, joiner if i == 0 else "and") for i, kind in enumerate(kinds)
    ]


def _unbracketed(text: str) -> str:
    """Items in brackets read as items: ``three jokes (about A, B and C)``, ``for each of these
    cities (Paris, Tokyo, Cairo) write ...``."""
    text = re.sub(rf"\s*\((?=(?:{_ABOUT})\s)([^()]+)\)", r" \1", text, flags=re.I)
    return re.sub(
        rf"^((?:for|para|pour|für)\s+(?:each|every)\b[^(]*?)\s*\((?P<items>[^()]+)\)[,:]?\s*"
        rf"(?=(?:{GENERATE_VERBS})\b)",
        r"\1: \g<items> - ",
        text,
        flags=re.I,
    )


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


_LISTED = re.compile(r"(?:^|\s)(?:\(\d+\)|\d+[.)]|\(?[a-e]\))\s+")
_QUOTED = re.compile(r"""["“](?P<text>[^"”]{3,})["”]""")


def _listed(source: str) -> list[str]:
    """The things a source lists: numbered or lettered entries, else quoted texts, else a
    list of short names (``cats, dogs and birds``); a text that lists nothing is one thing."""
    marked = [part.strip() for part in _LISTED.split(source) if part.strip()]
    if len(_LISTED.findall(source)) >= 2:
        return [_QUOTED.sub(lambda m: m["text"], part).strip() for part in marked]
    quoted = [m["text"].strip() for m in _QUOTED.finditer(source)]
    if len(quoted) >= 2:
        return quoted
    items = split_list(source)
    return items if all(len(item.split()) <= 6 for item in items) else [source]


def split_list(text: str) -> list[str]:
    items = re.split(
        r"\s*,\s*(?:and\s+|&\s*|y\s+|et\s+|und\s+)?|\s+(?:and|&|y|et|und|e)\s+",
        text.strip(" .-–—"),
        flags=re.I,
    )
    return [item.strip() for item in items if item.strip()]


_US_PLURALS = frozenset({"haikus", "menus", "gurus", "emus", "tutus", "tofus"})
"""Plurals in -us (not "bus" or "virus")."""


def singular(noun: str) -> str:
    words = noun.split()
    last, lower = words[-1], words[-1].lower()
    if lower.endswith("ies") and len(lower) > 4:
        last = last[:-3] + "y"
    elif lower.endswith(("ches", "shes", "sses", "xes")):
        last = last[:-2]
    elif lower in _US_PLURALS or (lower.endswith("s") and not lower.endswith(("ss", "us", "is"))):
        last = last[:-1]
    return " ".join([*words[:-1], last])


def _singular_phrase(head: str) -> str:
    words = head.split()
    return " ".join([*words[:-1], _article(singular(words[-1])), singular(words[-1])])


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"
