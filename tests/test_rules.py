"""The rules planner (clauses, then tools and references) on a table of phrasings: what it
plans, what it plans without understanding (a stronger model may do better), and what it
refuses."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from code_evolver.organizer import organize
from code_evolver.planner.decompose import NotDecomposable, decompose, rules_plan

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
            (G, [], None, "Give me a short story about pirates."),
            (G, [], None, "Give me a short story about ninjas."),
            (G, [], None, "Give me a short story about robots."),
            (G, [], None, "Give me a short story about wizards."),
        ],
    ),
    (
        "tell me three jokes about cats",
        [
            (G, [], None, "Tell me a joke about cats (number 1 of 3, different from the others)."),
            (G, [], None, "Tell me a joke about cats (number 2 of 3, different from the others)."),
            (G, [], None, "Tell me a joke about cats (number 3 of 3, different from the others)."),
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

# The requests of issue 9 that the earlier rules got wrong.
PLANNED += [
    (
        "summarize this: The city council met on Tuesday to discuss bike lanes, then translate "
        "it to german",
        [
            (S, [], None, "The city council met on Tuesday to discuss bike lanes"),
            (T, ["step1"], "German", "{step1}"),
        ],
    ),
    ("make this uppercase: hello there", [("upper", [], None, "hello there")]),
    (
        "brainstorm 3 names for a cat, pick the best one, and write a short bio for it",
        [
            *[
                (
                    G,
                    [],
                    None,
                    f"Brainstorm a name for a cat (number {n} of 3, different from the others).",
                )
                for n in (1, 2, 3)
            ],
            (
                G,
                ["step1", "step2", "step3"],
                None,
                "Pick the best one.\n\n{step1}\n\n{step2}\n\n{step3}",
            ),
            (G, ["step4"], None, "Write a short bio for it.\n\n{step4}"),
        ],
    ),
    (
        "make a haiku about rain; also make a haiku about snow; also make one about fog",
        [
            (G, [], None, "Make a haiku about rain."),
            (G, [], None, "Make a haiku about snow."),
            (G, [], None, "Make a haiku about fog."),
        ],
    ),
    (
        "summarize the history of rome and write a poem about venice",
        [
            (G, [], None, "Summarize the history of rome."),
            (G, [], None, "Write a poem about venice."),
        ],
    ),
    (
        "Écris un court poème sur Paris puis traduis-le en anglais.",
        [(G, [], None, "Écris un court poème sur Paris."), (T, ["step1"], "English", "{step1}")],
    ),
    (
        "write a poem about the sea and a short story about a sailor, then combine them",
        [
            (G, [], None, "Write a poem about the sea."),
            (G, [], None, "Write a short story about a sailor."),
            ("combine", ["step1", "step2"], None, "{step1}\n\n{step2}"),
        ],
    ),
    (
        "translate 'thank you' into French and German, then count the words of the translations",
        [
            (T, [], "French", "thank you"),
            (T, [], "German", "thank you"),
            ("word_count", ["step1", "step2"], None, "{step1}\n\n{step2}"),
        ],
    ),
    ("wait 3 seconds", [("delay", [], None, "")]),
]
TOOLS = TOOLS | {"upper", "word_count", "delay"}

# Planned as one writing step, but not understood: in auto mode a stronger model plans these.
NOT_UNDERSTOOD = ["what is the weather in paris?", "hello", "why is the sky blue"]

REFUSED = [
    ("", "no instruction"),
    ("   ", "no instruction"),
    ("write a joke and translate it to klingon", "which language"),
    ("translate it to french", "what text should .translate it to french. translate"),
    ("translate to french and spanish", "pipe it in"),
]


@pytest.mark.parametrize(("request_text", "expected"), PLANNED, ids=[r for r, _ in PLANNED])
def test_planned(request_text: str, expected: list[tuple[str, list[str], str | None, str]]) -> None:
    plan = rules_plan(request_text, TOOLS)
    assert plan is not None
    got = [(s.tool, s.depends_on, s.params.get("target_lang"), s.input) for s in plan.steps]
    assert got == expected
    assert [s.step_id for s in plan.steps] == [f"step{i}" for i in range(1, len(expected) + 1)]
    assert plan.request == request_text.strip()


@pytest.mark.parametrize("request_text", NOT_UNDERSTOOD)
def test_not_understood(request_text: str) -> None:
    decomposition = decompose(request_text, TOOLS)
    assert not decomposition.understood
    assert [s.tool for s in decomposition.plan.steps] == [G]


@pytest.mark.parametrize(("request_text", "reason"), REFUSED)
def test_refused_with_the_reason(request_text: str, reason: str) -> None:
    with pytest.raises(NotDecomposable, match=reason):
        decompose(request_text, TOOLS)
    assert rules_plan(request_text, TOOLS) is None


def test_parallel_steps_are_described() -> None:
    plan = rules_plan("write a joke and translate it to french and spanish", TOOLS)
    assert plan is not None
    assert [s.description for s in plan.steps] == [
        "Write a joke",
        "Translate to French",
        "Translate to Spanish",
    ]


def test_declines_when_a_needed_tool_is_not_configured() -> None:
    assert rules_plan("write a joke and translate it to french", {"content_generator"}) is None
    assert rules_plan("write a joke", {"content_generator"}) is not None


def test_a_clause_with_text_but_no_telling_word_is_left_to_a_choice() -> None:
    decomposition = decompose("reverse the order of: a b c", TOOLS)
    assert decomposition.uncertain == (0,)
    chosen = decompose("reverse the order of: a b c", TOOLS, {0: "upper"})
    assert [(s.tool, s.input) for s in chosen.plan.steps] == [("upper", "a b c")]


def test_deterministic() -> None:
    request = "write 3 different jokes about cats, dogs and birds"
    assert rules_plan(request, TOOLS) == rules_plan(request, TOOLS)


def test_at_least_thirty_phrasings_are_covered() -> None:
    assert len(PLANNED) + len(NOT_UNDERSTOOD) + len(REFUSED) >= 40


_WORD_TEXT = (
    "write translate it them to french and then also ; , : ' \" summarize count words the a "
    "poem each of for one about 3 both combine sort lines uppercase wait 2 seconds puis y "
    "und écris traduis-le résume-la \n . ? !"
)
WORDS = st.sampled_from(_WORD_TEXT.split(" "))


@settings(max_examples=300, deadline=None)
@given(st.lists(WORDS | st.text(max_size=8), max_size=40).map(" ".join))
@example("translate \x005\x00 to french")  # NUL typed in: it marks quotes' holes inside
@example('summarize "hi" and \x001\x00')
def test_any_request_is_a_runnable_plan_or_a_reason(request_text: str) -> None:
    """Whatever the words, the rules give a plan the organizer accepts, or say why not."""
    tools = {*TOOLS, "line_count", "sort_lines", "unique_words"}
    try:
        plan = decompose(request_text, tools).plan
    except NotDecomposable as exc:
        reason = str(exc)
    else:
        organize(plan, tools)
        reason = "planned"
    assert reason


def test_things_named_after_and_are_made_from_the_same_input() -> None:
    plan = rules_plan(
        "write a tweet about our app, and give me its word count and an uppercase version",
        {*TOOLS, "upper"},
    )
    assert plan is not None
    assert [(s.tool, s.depends_on) for s in plan.steps] == [
        (G, []),
        ("word_count", ["step1"]),
        ("upper", ["step1"]),
    ]


@pytest.mark.parametrize(
    ("request_text", "sources"),
    [
        (
            "summarize these two reviews and compare them: 'Great food, slow service.' "
            "'Quick, friendly and cheap.'",
            ["Great food, slow service.", "Quick, friendly and cheap."],
        ),
        (
            "Summarize the two paragraphs separately, then merge the summaries. First: The "
            "library opens late. Second: The pool is closed.",
            ["The library opens late.", "The pool is closed."],
        ),
    ],
)
def test_several_texts_of_one_clause_get_a_step_each(request_text: str, sources: list[str]) -> None:
    plan = rules_plan(request_text, TOOLS)
    assert plan is not None
    summaries = [s for s in plan.steps if s.tool == S]
    assert [s.input for s in summaries] == sources
    last = plan.steps[-1]
    assert sorted(last.depends_on) == [s.step_id for s in summaries]


def test_the_same_work_on_another_text() -> None:
    plan = rules_plan("count the words in 'to be or not to be' and in 'let it be'", TOOLS)
    assert plan is not None
    assert [(s.tool, s.input) for s in plan.steps] == [
        ("word_count", "to be or not to be"),
        ("word_count", "let it be"),
    ]


def test_items_in_parentheses_after_a_count() -> None:
    plan = rules_plan("write a slogan in three tones (playful, serious, poetic)", TOOLS)
    assert plan is not None
    assert [s.input for s in plan.steps] == [
        "Write a slogan (playful tone).",
        "Write a slogan (serious tone).",
        "Write a slogan (poetic tone).",
    ]


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        (  # numbered steps
            "1) write a paragraph about coffee 2) summarize it 3) translate the summary to French",
            [(G, [], None), (S, ["step1"], None), (T, ["step2"], "French")],
        ),
        (
            "translate 'the early bird' into German, then translate the German version back "
            "into English",
            [(T, [], "German"), (T, ["step1"], "English")],
        ),
        (
            "write a short poem about the ocean, then count its words and shout it",
            [(G, [], None), ("word_count", ["step1"], None), ("upper", ["step1"], None)],
        ),
        (
            "tell me a joke about each of: cats, dogs, and parrots",
            [(G, [], None), (G, [], None), (G, [], None)],
        ),
        (
            "schrijf een grap over fietsen en vertaal die naar het Engels en het Frans",
            [(G, [], None), (T, ["step1"], "English"), (T, ["step1"], "French")],
        ),
        (
            "make a list of 10 vegetables, one per line, then alphabetize it",
            [(G, [], None), ("sort_lines", ["step1"], None)],
        ),
    ],
)
def test_more_phrasings(
    request_text: str, expected: list[tuple[str, list[str], str | None]]
) -> None:
    plan = rules_plan(request_text, {*TOOLS, "sort_lines"})
    assert plan is not None
    got = [(s.tool, s.depends_on, s.params.get("target_lang")) for s in plan.steps]
    assert got == expected


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        (
            "write two limericks, one about a frog and one about a fox, and translate the "
            "second one into German",
            ["Write a limerick about a frog.", "Write a limerick about a fox."],
        ),
        (
            "écris une blague sur les chats et une autre sur les chiens",
            ["Écris une blague sur les chats.", "Écris une blague sur les chiens."],
        ),
    ],
)
def test_items_after_a_count_or_a_first_one(request_text: str, expected: list[str]) -> None:
    plan = rules_plan(request_text, TOOLS)
    assert plan is not None
    writers = [s for s in plan.steps if s.tool == G]
    assert [s.input for s in writers] == expected
    assert all(s.depends_on == [] for s in writers)


def test_what_the_numbered_steps_and_the_combined_text_read() -> None:
    plan = rules_plan(
        "1) write a haiku about fog 2) write a haiku about frost 3) combine them "
        "4) count the words of the combined text",
        TOOLS,
    )
    assert plan is not None
    assert [(s.tool, s.depends_on) for s in plan.steps] == [
        (G, []),
        (G, []),
        ("combine", ["step1", "step2"]),
        ("word_count", ["step3"]),
    ]


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        (
            "whip up 3 taglines for a yoga studio, one per line, and sort them",
            [(G, []), ("sort_lines", ["step1"])],
        ),
        (
            "write a poem about the city; caps lock it and also translate it to Italian",
            [(G, []), ("upper", ["step1"]), (T, ["step1"])],
        ),
        (
            "draft a tweet about our launch; give me the word count as well as an Italian version",
            [(G, []), ("word_count", ["step1"]), (T, ["step1"])],
        ),
        (
            "écris une blague sur les chats et une sur les chiens, traduis chacune en anglais",
            [(G, []), (G, []), (T, ["step1"]), (T, ["step2"])],
        ),
    ],
)
def test_siblings_and_each(request_text: str, expected: list[tuple[str, list[str]]]) -> None:
    plan = rules_plan(request_text, {*TOOLS, "sort_lines", "upper"})
    assert plan is not None
    assert [(s.tool, s.depends_on) for s in plan.steps] == expected


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        (
            "write three jokes (about lawyers, doctors, and teachers)",
            [(G, []), (G, []), (G, [])],
        ),
        ("For each of these cities (Paris, Tokyo, Cairo) write a travel tip.", [(G, [])] * 3),
        ("Schreib mir drei Witze: über Katzen, über Hunde und über Vögel.", [(G, [])] * 3),
        ("écris un haïku sur l'hiver et, sans rapport, une blague sur les chats", [(G, [])] * 2),
        (
            "scrivi una barzelletta sui pinguini e una sui gatti, poi uniscile in un unico testo",
            [(G, []), (G, []), ("combine", ["step1", "step2"])],
        ),
        (
            "Schreibe einen Slogan für ein Café und einen für eine Bäckerei und füge beide "
            "zusammen.",
            [(G, []), (G, []), ("combine", ["step1", "step2"])],
        ),
        (
            "schrijf een kort verhaal over een oude fiets en vat het daarna samen",
            [(G, []), (S, ["step1"])],
        ),
        (
            "scrivi due poesie, una sul mare e una sulla montagna, poi traduci entrambe in inglese",
            [(G, []), (G, []), (T, ["step1"]), (T, ["step2"])],
        ),
        (
            "translate 'I love this city' into Italian. Also write a story about an umbrella",
            [(T, []), (G, [])],
        ),
    ],
)
def test_items_and_words_of_other_languages(
    request_text: str, expected: list[tuple[str, list[str]]]
) -> None:
    plan = rules_plan(request_text, TOOLS)
    assert plan is not None
    assert [(s.tool, s.depends_on) for s in plan.steps] == expected


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        (
            "write two emails declining a meeting invitation, one formal and one casual",
            [(G, [], "(formal)"), (G, [], "(casual)")],
        ),
        (
            "Summarize the following text, and separately translate it into Italian: The hotel "
            "offers free breakfast.",
            [
                (S, [], "The hotel offers free breakfast."),
                (T, [], "The hotel offers free breakfast."),
            ],
        ),
        (
            "take this text, translate it to Spanish and then shout it: 'the meeting is off'",
            [(T, [], "the meeting is off"), ("upper", ["step1"], "{step1}")],
        ),
        (
            "take the following: 'We shipped it.' Translate it to German, summarize the German "
            "version, and uppercase the original.",
            [(T, [], "We shipped it."), (S, ["step1"], "{step1}"), ("upper", [], "We shipped it.")],
        ),
        (
            "Write a paragraph about coffee. Then summarize it and put it in uppercase (the "
            "original, not the summary).",
            [
                (G, [], "Write a paragraph about coffee."),
                (S, ["step1"], "{step1}"),
                ("upper", ["step1"], "{step1}"),
            ],
        ),
    ],
)
def test_kinds_siblings_lead_ins_and_the_original(
    request_text: str, expected: list[tuple[str, list[str], str]]
) -> None:
    plan = rules_plan(request_text, {*TOOLS, "upper"})
    assert plan is not None
    steps = [(s.tool, s.depends_on, s.input) for s in plan.steps]
    assert [(tool, deps) for tool, deps, _ in steps] == [(t, d) for t, d, _ in expected]
    for (_, _, text), (_, _, wanted) in zip(steps, expected, strict=True):
        assert wanted in text


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        (
            "Please do these independently:\n(a) summarize 'Sales rose.'\n(b) write a haiku "
            "about coffee\n(c) translate 'good night' into Dutch",
            [(S, []), (G, []), (T, [])],
        ),
        ("summarize this: (a) is fine, (b) is not", [(S, [])]),  # a text, not steps
        (
            "write a speech about sleep, then give me the speech in uppercase plus its word count",
            [(G, []), ("upper", ["step1"]), ("word_count", ["step1"])],
        ),
        (
            "write a story about a lighthouse, translate it into Italian, and count the words "
            "of both the original and the translation",
            [(G, []), (T, ["step1"]), ("word_count", ["step1"]), ("word_count", ["step2"])],
        ),
        (
            "write a haiku about rain and a haiku about sun, then count the words across both",
            [(G, []), (G, []), ("word_count", ["step1", "step2"])],
        ),
    ],
)
def test_lettered_steps_plus_and_measures_of_both(
    request_text: str, expected: list[tuple[str, list[str]]]
) -> None:
    plan = rules_plan(request_text, {*TOOLS, "upper", "word_count"})
    assert plan is not None
    got = [(s.tool, s.depends_on) for s in plan.steps]
    assert sorted(got) == sorted(expected)  # parallel steps may come in either order


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        (
            'Summarize each of these articles and merge the summaries into one brief:\n(1) "Rates '
            'held, and then fell." (2) "Rain came, then sun." (3) "A coach, who starts soon."',
            [(S, []), (S, []), (S, []), ("combine", ["step1", "step2", "step3"])],
        ),
        (
            "Write a haiku and a limerick, both about snow, and tell me how many words they "
            "have in total.",
            [(G, []), (G, []), ("word_count", ["step1", "step2"])],
        ),
        (
            "Two things: summarize the text below, and write me a limerick about tax day.\n\n"
            "The library opens late in May, and then closes early in June.",
            [(S, []), (G, [])],
        ),
    ],
)
def test_listed_texts_shared_topics_and_text_below(
    request_text: str, expected: list[tuple[str, list[str]]]
) -> None:
    plan = rules_plan(request_text, {*TOOLS, "word_count"})
    assert plan is not None
    assert [(s.tool, s.depends_on) for s in plan.steps] == expected
    if request_text.startswith("Two things"):
        assert plan.steps[0].input.startswith("The library opens late in May")
    if request_text.startswith("Write a haiku"):
        assert all("about snow" in s.input for s in plan.steps[:2])


def test_kinds_of_one_with_an_adjective_then_each_summarized_side_by_side() -> None:
    plan = rules_plan(
        "draft two short bios for me, one formal and one casual, then boil each of them down "
        "to a sentence, then put both summaries side by side",
        TOOLS,
    )
    assert plan is not None
    assert [(s.tool, s.depends_on) for s in plan.steps] == [
        (G, []),
        (G, []),
        (S, ["step1"]),
        (S, ["step2"]),
        ("combine", ["step3", "step4"]),
    ]
    assert plan.steps[0].input == "Draft a short bio for me (formal)."


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        (
            "write a haiku about rain then translate it to frnech",
            [(G, [], None), (T, ["step1"], "French")],
        ),
        ("translate 'hola' to germna pls", [(T, [], "German")]),
        (
            "hey real quick, write a story about a robot, after that summarize it. thanks!",
            [(G, [], None), (S, ["step1"], None)],
        ),
        ("hello", [(G, [], None)]),  # a greeting alone is the request
    ],
)
def test_typos_in_languages_and_fillers(
    request_text: str, expected: list[tuple[str, list[str], str | None]]
) -> None:
    plan = rules_plan(request_text, TOOLS)
    assert plan is not None
    got = [(s.tool, s.depends_on, s.params.get("target_lang")) for s in plan.steps]
    assert got == expected
    assert "hey" not in plan.steps[0].input.lower()
    assert "thanks" not in plan.steps[-1].input.lower()


def test_a_rare_word_is_not_read_as_a_misspelled_language() -> None:
    from code_evolver.planner.languages import canonical

    assert canonical("russia") is None  # the start of "russian": a country
    assert canonical("finish") is None  # Finnish is not a common target
    assert canonical("spansih") == "Spanish"


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        (
            "step 1 write a joke about lawyers step 2 write a joke about doctors step 3 combine "
            "both into one message",
            [(G, []), (G, []), ("combine", ["step1", "step2"])],
        ),
        (
            "ok so first write a tweet about mondays, second make what you wrote all caps, "
            "third count the words",
            [(G, []), ("upper", ["step1"]), ("word_count", ["step2"])],
        ),
        ("wait 2 seconds and while that's happening write a toast", [("delay", []), (G, [])]),
        (
            "write a short paragraph about sleep. how many words is the above?",
            [(G, []), ("word_count", ["step1"])],
        ),
        ("1. write a poem\n2. summarize it", [(G, []), (S, ["step1"])]),
    ],
)
def test_steps_in_words_parallel_work_and_questions(
    request_text: str, expected: list[tuple[str, list[str]]]
) -> None:
    plan = rules_plan(request_text, {*TOOLS, "upper", "word_count", "delay"})
    assert plan is not None
    assert [(s.tool, s.depends_on) for s in plan.steps] == expected


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        (
            "write three jokes (about lawyers, doctors, and teachers) and translate the second "
            "one into German",
            [(G, []), (G, []), (G, []), (T, ["step2"])],
        ),
        (
            "write haikus about spring, summer and autumn then combine the first two",
            [(G, []), (G, []), (G, []), ("combine", ["step1", "step2"])],
        ),
        (
            "translate 'the shop opens at nine' to french and german, then uppercase the "
            "german one",
            [(T, []), (T, []), ("upper", ["step2"])],
        ),
        (
            "escribe tres chistes, uno sobre médicos, otro sobre abogados y otro sobre profesores, "
            "y luego traduce los dos primeros al inglés",
            [(G, []), (G, []), (G, []), (T, ["step1"]), (T, ["step2"])],
        ),
    ],
)
def test_results_named_by_their_place_or_language(
    request_text: str, expected: list[tuple[str, list[str]]]
) -> None:
    plan = rules_plan(request_text, {*TOOLS, "upper"})
    assert plan is not None
    assert [(s.tool, s.depends_on) for s in plan.steps] == expected


def test_unique_words_and_joins_in_plain_words() -> None:
    plan = rules_plan(
        'list every word once from this, no repeats: "to be or not to be"', {*TOOLS, "unique_words"}
    )
    assert plan is not None
    assert [s.tool for s in plan.steps] == ["unique_words"]
    joined = rules_plan(
        "translate 'hi' into spanish and into french then put both translations one after the "
        "other",
        TOOLS,
    )
    assert joined is not None
    assert [s.tool for s in joined.steps] == [T, T, "combine"]


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        (
            "write me a short bio for a chef, then a second one in a different tone, and when "
            "that's done compare the two and tell me which is better?",
            [(G, []), (G, []), (G, ["step1", "step2"])],
        ),
        (
            "Schrijf een gedicht over de lente en een gedicht over de herfst en zeg daarna welke "
            "het mooiste is.",
            [(G, []), (G, []), (G, ["step1", "step2"])],
        ),
        (
            "step 1: write an article about recycling. step 2: summarize it. step 3: count the "
            "words in the article and in the summary",
            [(G, []), (S, ["step1"]), ("word_count", ["step1"]), ("word_count", ["step2"])],
        ),
        (
            "real quick, give me a slogan for a bakery, a gym and a bookstore",
            [(G, []), (G, []), (G, [])],
        ),
    ],
)
def test_another_one_decisions_step_colons_and_one_each(
    request_text: str, expected: list[tuple[str, list[str]]]
) -> None:
    plan = rules_plan(request_text, {*TOOLS, "word_count"})
    assert plan is not None
    assert sorted((s.tool, s.depends_on) for s in plan.steps) == sorted(expected)
