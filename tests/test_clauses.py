"""The clause splitter on a table of requests: the instructions, their source texts, and how
each is joined to the one before."""

from __future__ import annotations

import pytest

from code_evolver.planner.clauses import split_request

# (request, [(joiner, text, source), ...])
TABLE: list[tuple[str, list[tuple[str, str, str | None]]]] = [
    (
        "write a joke and translate it to french and spanish",
        [("", "write a joke", None), ("and", "translate it to french and spanish", None)],
    ),
    (
        "summarize this: The city council met on Tuesday to discuss bike lanes, then translate "
        "it to german",
        [
            ("", "summarize this", "The city council met on Tuesday to discuss bike lanes"),
            ("then", "translate it to german", None),
        ],
    ),
    ("make this uppercase: hello there", [("", "make this uppercase", "hello there")]),
    ("now translate it to french", [("", "translate it to french", None)]),  # a chat follow-up
    ("ok now summarize that", [("", "summarize that", None)]),
    (
        "brainstorm 3 names for a cat, pick the best one, and write a short bio for it",
        [
            ("", "brainstorm 3 names for a cat", None),
            ("and", "pick the best one", None),
            ("and", "write a short bio for it", None),
        ],
    ),
    (
        "make a haiku about rain; also make a haiku about snow; also make one about fog",
        [
            ("", "make a haiku about rain", None),
            ("also", "make a haiku about snow", None),
            ("also", "make one about fog", None),
        ],
    ),
    (
        "summarize the history of rome and write a poem about venice",
        [("", "summarize the history of rome", None), ("and", "write a poem about venice", None)],
    ),
    ("write a story about cats and dogs", [("", "write a story about cats and dogs", None)]),
    (
        "give me a haiku about spring, a limerick about a cat and a fun fact about owls",
        [
            ("", "give me a haiku about spring", None),
            ("and", "a limerick about a cat", None),
            ("and", "a fun fact about owls", None),
        ],
    ),
    (
        "I need two things: a slogan for a gym and a short description of a yoga class",
        [("", "a slogan for a gym", None), ("and", "a short description of a yoga class", None)],
    ),
    (
        "sort these lines alphabetically:\nbanana\napple",
        [("", "sort these lines alphabetically", "banana\napple")],
    ),
    (
        "Écris un court poème sur Paris puis traduis-le en anglais.",
        [("", "Écris un court poème sur Paris", None), ("then", "traduis-le en anglais", None)],
    ),
    (
        "Escribe un cuento corto sobre un gato y luego resúmelo.",
        [("", "Escribe un cuento corto sobre un gato", None), ("then", "resúmelo", None)],
    ),
    (
        "translate 'thank you' into French and German",
        [("", "translate into French and German", "thank you")],
    ),
    ("tl;dr this please", [("", "tldr this please", None)]),
    (
        "give me the gist: The council met and agreed to build two bike lanes next year.",
        [
            (
                "",
                "give me the gist",
                "The council met and agreed to build two bike lanes next year.",
            )
        ],
    ),
    (
        "write a poem about the sea, and separately wait 3 seconds",
        [("", "write a poem about the sea", None), ("also", "wait 3 seconds", None)],
    ),
    (
        "Please write a motivational quote, a fun fact about space, and a riddle.",
        [
            ("", "write a motivational quote", None),
            ("and", "a fun fact about space", None),
            ("and", "a riddle", None),
        ],
    ),
    (
        "write a tweet, and give me its word count and an uppercase version",
        [
            ("", "write a tweet", None),
            ("and", "give me its word count", None),
            ("with", "an uppercase version", None),
        ],
    ),
]


@pytest.mark.parametrize(("request_text", "expected"), TABLE, ids=[r[:50] for r, _ in TABLE])
def test_split(request_text: str, expected: list[tuple[str, str, str | None]]) -> None:
    parts = split_request(request_text)
    assert [(c.joiner, c.text, c.source) for c in parts.clauses] == expected


def test_a_colon_inside_quotes_or_a_time_is_not_source_text() -> None:
    (clause,) = split_request("write a poem called 'Dawn: a beginning'").clauses
    assert clause.source is None
    (meeting,) = split_request("write a reminder for the meeting at 10:30").clauses
    assert (meeting.text, meeting.source) == ("write a reminder for the meeting at 10:30", None)
