"""The rules planner on a table of phrasings: what it plans, and what it must decline."""

from __future__ import annotations

import pytest

from code_evolver.planner.rules import rules_plan

TOOLS = {"content_generator", "translator", "summarizer", "combine"}
G, T, S = "content_generator", "translator", "summarizer"

# Each expected step: (tool, depends_on, target_lang or None, input).
PLANNED = [
    (
        "write a joke and translate it to french and spanish",
        [
            (G, [], None, "Write a joke."),
            (T, ["step1"], "French", "{step1}"),
            (T, ["step1"], "Spanish", "{step1}"),
        ],
    ),
    (
        "Write a poem about the sea, then translate it into German.",
        [(G, [], None, "Write a poem about the sea."), (T, ["step1"], "German", "{step1}")],
    ),
    (
        "write a haiku about rain and translate it to French, Spanish, and German",
        [
            (G, [], None, "Write a haiku about rain."),
            (T, ["step1"], "French", "{step1}"),
            (T, ["step1"], "Spanish", "{step1}"),
            (T, ["step1"], "German", "{step1}"),
        ],
    ),
    (
        "tell me a joke and translate it into Japanese",
        [(G, [], None, "Tell me a joke."), (T, ["step1"], "Japanese", "{step1}")],
    ),
    (
        "Write a limerick about a cat, and then translate it to italian & portuguese",
        [
            (G, [], None, "Write a limerick about a cat."),
            (T, ["step1"], "Italian", "{step1}"),
            (T, ["step1"], "Portuguese", "{step1}"),
        ],
    ),
    (
        "write a story about a dragon and translate the result to farsi",
        [(G, [], None, "Write a story about a dragon."), (T, ["step1"], "Persian", "{step1}")],
    ),
    (
        'translate "good morning" to french and german',
        [(T, [], "French", "good morning"), (T, [], "German", "good morning")],
    ),
    ("translate hello world into spanish", [(T, [], "Spanish", "hello world")]),
    (
        "translate: see you tomorrow to Dutch, Swedish and Polish",
        [
            (T, [], "Dutch", "see you tomorrow"),
            (T, [], "Swedish", "see you tomorrow"),
            (T, [], "Polish", "see you tomorrow"),
        ],
    ),
    (
        "write a story about a robot, then summarize it, then translate it to french",
        [
            (G, [], None, "Write a story about a robot."),
            (S, ["step1"], None, "{step1}"),
            (T, ["step2"], "French", "{step2}"),
        ],
    ),
    (
        "write a story about a robot and summarize it",
        [(G, [], None, "Write a story about a robot."), (S, ["step1"], None, "{step1}")],
    ),
    (
        "Write an essay about bees; then sum it up",
        [(G, [], None, "Write an essay about bees."), (S, ["step1"], None, "{step1}")],
    ),
    (
        "write an essay about AI, then make it shorter",
        [
            (G, [], None, "Write an essay about AI."),
            (G, ["step1"], None, "Make it shorter.\n\n{step1}"),
        ],
    ),
    (
        "draft an email to my landlord, then rewrite it to be more polite",
        [
            (G, [], None, "Draft an email to my landlord."),
            (G, ["step1"], None, "Rewrite it to be more polite.\n\n{step1}"),
        ],
    ),
    (
        "write 3 different jokes about cats, dogs and birds",
        [
            (G, [], None, "Write a joke about cats."),
            (G, [], None, "Write a joke about dogs."),
            (G, [], None, "Write a joke about birds."),
        ],
    ),
    (
        "write two poems about summer and winter",
        [(G, [], None, "Write a poem about summer."), (G, [], None, "Write a poem about winter.")],
    ),
    (
        "Give me 4 short stories about pirates, ninjas, robots, and wizards",
        [
            (G, [], None, "Give a story about pirates."),
            (G, [], None, "Give a story about ninjas."),
            (G, [], None, "Give a story about robots."),
            (G, [], None, "Give a story about wizards."),
        ],
    ),
    (
        "tell me three jokes about cats",
        [
            (G, [], None, "Tell a joke about cats (number 1 of 3, different from the others)."),
            (G, [], None, "Tell a joke about cats (number 2 of 3, different from the others)."),
            (G, [], None, "Tell a joke about cats (number 3 of 3, different from the others)."),
        ],
    ),
    (
        "come up with 2 names for a bakery",
        [
            (
                G,
                [],
                None,
                "Come up with a name for a bakery (number 1 of 2, different from the others).",
            ),
            (
                G,
                [],
                None,
                "Come up with a name for a bakery (number 2 of 2, different from the others).",
            ),
        ],
    ),
    (
        "write a haiku about autumn and a limerick about cheese",
        [
            (G, [], None, "Write a haiku about autumn."),
            (G, [], None, "Write a limerick about cheese."),
        ],
    ),
    (
        "write a tweet about coffee and compose a song about tea",
        [(G, [], None, "Write a tweet about coffee."), (G, [], None, "Compose a song about tea.")],
    ),
    ("write a joke", [(G, [], None, "Write a joke.")]),
    ("Please write a haiku about the moon!", [(G, [], None, "Write a haiku about the moon.")]),
    ("explain how rainbows form", [(G, [], None, "Explain how rainbows form.")]),
    (
        "summarize: The quick brown fox jumps over the lazy dog. It was fast.",
        [(S, [], None, "The quick brown fox jumps over the lazy dog. It was fast.")],
    ),
    ("write a function that returns {x}", [(G, [], None, "Write a function that returns {{x}}.")]),
    (
        "write a poem, then write a story",
        [(G, [], None, "Write a poem."), (G, ["step1"], None, "Write a story.\n\n{step1}")],
    ),
]

DECLINED = [
    "what is the weather in paris?",
    "",
    "   ",
    "write a joke and translate it to klingon",
    "write 3 jokes about cats and dogs",
    "write a story about cats and a dog",
    "translate it to french",
    "compare python and rust",
    "fix the bug in my code",
    "write three jokes about cats, then translate them to french",
    "hello",
    "write a joke and translate it to french and spanish, then summarize it",
    "why is the sky blue",
]


@pytest.mark.parametrize(("request_text", "expected"), PLANNED, ids=[r for r, _ in PLANNED])
def test_planned(request_text: str, expected: list[tuple[str, list[str], str | None, str]]) -> None:
    plan = rules_plan(request_text, TOOLS)
    assert plan is not None
    got = [(s.tool, s.depends_on, s.params.get("target_lang"), s.input) for s in plan.steps]
    assert got == expected
    assert [s.step_id for s in plan.steps] == [f"step{i}" for i in range(1, len(expected) + 1)]
    assert plan.request == request_text.strip()


@pytest.mark.parametrize("request_text", DECLINED)
def test_declined(request_text: str) -> None:
    assert rules_plan(request_text, TOOLS) is None


def test_parallel_steps_share_a_group_and_are_described() -> None:
    plan = rules_plan("write a joke and translate it to french and spanish", TOOLS)
    assert plan is not None
    assert [s.parallel_group for s in plan.steps] == [None, 1, 1]
    assert [s.description for s in plan.steps] == [
        "Write a joke",
        "Translate to French",
        "Translate to Spanish",
    ]


def test_declines_when_a_needed_tool_is_not_configured() -> None:
    assert rules_plan("write a joke and translate it to french", {"content_generator"}) is None
    assert rules_plan("write a joke", {"content_generator"}) is not None


def test_deterministic() -> None:
    request = "write 3 different jokes about cats, dogs and birds"
    assert rules_plan(request, TOOLS) == rules_plan(request, TOOLS)


def test_at_least_thirty_phrasings_are_covered() -> None:
    assert len(PLANNED) + len(DECLINED) >= 30
