"""The plan quality checks: one case per degenerate plan a weak planner writes, and good plans
for real requests (the held-out set, in English, French, Spanish and German) that must pass."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from code_evolver.plan import Plan
from code_evolver.planner import rules_plan
from code_evolver.planner.quality import (
    NOTHING_TO_TRANSLATE,
    plan_problems,
    prompt_examples,
)
from code_evolver.planner.words import same_word, split_words

REPO = Path(__file__).resolve().parent.parent
# The worked examples of prompts/planner.txt (description, input) when these tests were written:
# the checks are tested against a fixed text, so that editing the prompt does not change them.
WORKED = {
    "write a joke and translate it to french and spanish": [
        ("Write a joke", "Write a short, clean joke."),
        ("Translate to French", "{{step1}}"),
        ("Translate to Spanish", "{{step1}}"),
    ],
    "write a short story about a lighthouse keeper, then summarize it": [
        ("Write the story", "Write a short story about a lighthouse keeper."),
        ("Summarize the story", "{{step1}}"),
    ],
    "give me a haiku about spring, a limerick about a cat and a fun fact about owls": [
        ("Haiku about spring", "Write a haiku about spring."),
        ("Limerick about a cat", "Write a limerick about a cat."),
        ("Fun fact about owls", "Tell a fun fact about owls."),
    ],
    "write a product description for a solar lamp and a tagline for it, then combine them": [
        ("Product description", "Write a product description for a solar lamp."),
        ("Tagline", "Write a tagline for a solar lamp."),
        ("Combine", "{{step2}}\n\n{{step1}}"),
    ],
}
PROMPT = "Tools:\n{tools}\n\n" + "\n\n".join(
    f"Request: {request}\nPlan: "
    + json.dumps({"steps": [{"description": d, "input": i} for d, i in steps]})
    for request, steps in WORKED.items()
)
EXAMPLES = prompt_examples(PROMPT)
G, T, S, C = "content_generator", "translator", "summarizer", "combine"
TOOLS = {G, T, S, C, "translate_many", "word_count", "line_count", "upper", "sort_lines", "delay"}


def make(*steps: tuple[str, str] | tuple[str, str, dict[str, Any]]) -> Plan:
    """A plan from (tool, input[, params]); ids step1, step2, ...; depends_on from the input."""
    return Plan.from_data(
        {
            "steps": [
                {
                    "step_id": f"step{i}",
                    "tool": s[0],
                    "input": s[1],
                    "params": s[2] if len(s) > 2 else {},
                    "depends_on": re.findall(r"\{(step\d+)\}", s[1]),
                }
                for i, s in enumerate(steps, start=1)
            ]
        }
    )


def problems(plan: Plan, request: str, max_parts: int | None = None) -> tuple[str, ...]:
    return plan_problems(plan, request, examples=EXAMPLES, max_parts=max_parts)


# --- prompt_examples --------------------------------------------------------------------------


def test_prompt_examples_reads_every_request_of_the_planner_prompt() -> None:
    prompt = (REPO / "prompts" / "planner.txt").read_text(encoding="utf-8")
    requests = re.findall(r"^Request: (.+)$", prompt, re.M)
    assert requests
    assert set(requests) <= set(prompt_examples(prompt))


def test_prompt_examples_reads_requests_and_step_texts() -> None:
    assert "write a short story about a lighthouse keeper, then summarize it" in EXAMPLES
    assert "Write a product description for a solar lamp." in EXAMPLES
    assert "Haiku about spring" in EXAMPLES  # descriptions too
    assert "{step1}" in EXAMPLES  # the prompt's {{step1}} is the plan's {step1}
    assert not any("Tools:" in e or "{tools}" in e for e in EXAMPLES)


def test_prompt_examples_skips_plan_lines_that_are_not_json() -> None:
    prompt = (
        'Plan: a JSON object, like {"steps": [...]}\n'
        "Request: write a sonnet about a windmill\n"
        'Plan: {"steps":[{"step_id":"step1","tool":"g","input":"A sonnet about a windmill.",'
        '"description":"Sonnet"}]}\n'
    )
    assert prompt_examples(prompt) == (
        "write a sonnet about a windmill",
        "A sonnet about a windmill.",
        "Sonnet",
    )


# --- 1. repeated identical steps ----------------------------------------------------------------


def test_identical_steps_are_named_with_their_tool_and_input() -> None:
    plan = make(
        (G, "Write a poem about the moon."),
        (G, "write a  poem about the moon"),
        (T, "{step1}", {"target_lang": "French"}),
        (T, "{step2}", {"target_lang": "French"}),
        (G, "Write a poem about the MOON."),
    )
    assert problems(plan, "write a poem about the moon and translate it to french") == (
        "steps step1, step2 and step5 are the same (tool content_generator, input "
        "'Write a poem about the moon.'); keep one",
    )


def test_identical_translations_name_their_params() -> None:
    plan = make(
        (G, "Write a joke."),
        (T, "{step1}", {"target_lang": "French"}),
        (T, "{step1}", {"target_lang": "french"}),
    )
    assert problems(plan, "write a joke and translate it to french") == (
        "steps step2 and step3 are the same (tool translator, input '{step1}', params "
        "target_lang=French); keep one",
    )


def test_same_input_with_other_params_is_not_a_copy() -> None:
    plan = make(
        (G, "Write a joke."),
        (T, "{step1}", {"target_lang": "French"}),
        (T, "{step1}", {"target_lang": "Spanish"}),
    )
    assert problems(plan, "write a joke and translate it to french and spanish") == ()


def test_identical_steps_for_a_counted_request_suggest_different_inputs() -> None:
    plan = make((G, "Tell a joke about cats."), (G, "Tell a joke about cats."))
    (problem,) = problems(plan, "tell me two jokes about cats")
    assert problem.endswith(
        "keep one, or make each input different if the request asks for several"
    )


# --- 2. copied worked example -------------------------------------------------------------------


def test_a_step_echoing_a_worked_example_is_named_with_the_copied_words() -> None:
    request = "write a poem about the sea and a short story about a sailor, then combine them"
    plan = make(
        (G, "Write a poem about the sea."),
        (G, "Write a short story about a lighthouse keeper."),
        (C, "{step1}\n\n{step2}"),
    )
    assert problems(plan, request) == (
        "step2 copies 'lighthouse keeper' from a worked example, but the request does not "
        "mention it; write the step with the request's own words",
    )


def test_a_copied_description_counts_too() -> None:
    plan = Plan.from_data(
        {
            "steps": [
                {
                    "step_id": "step1",
                    "tool": G,
                    "input": "Write a slogan for our bakery.",
                    "description": "Tagline for a solar lamp",
                }
            ]
        }
    )
    (problem,) = problems(plan, "write a slogan for our bakery")
    assert problem.startswith("step1 copies 'solar lamp'")


def test_a_one_word_topic_is_copied_only_with_the_word_before_it() -> None:
    request = "give me a haiku about rain and a limerick about a dog"
    copied = make((G, "Write a haiku about rain."), (G, "Write a limerick about a cat."))
    assert problems(copied, request) == (
        "step2 copies 'cat' from a worked example, but the request does not mention it; write "
        "the step with the request's own words",
    )
    own = make((G, "Write a haiku about rain."), (G, "Write a limerick about a dog and a cat."))
    assert problems(own, request) == ()


def test_steps_copying_one_example_are_named_in_one_line() -> None:
    plan = make(*[(G, "Write a short story about a lighthouse keeper.")] * 2)
    copied = [p for p in problems(plan, "write a poem about the moon") if "worked" in p]
    assert copied == [
        "step1 and step2 copy 'lighthouse keeper' from a worked example, but the request does "
        "not mention it; write the step with the request's own words"
    ]


def test_a_kind_of_text_from_an_example_is_copied_when_the_request_has_none_of_it() -> None:
    plan = make((G, "Write a product description for winter."))
    (problem,) = problems(plan, "I need a haiku about winter")
    assert problem.startswith("step1 copies 'product description' from a worked example")
    own = make((G, "Write a short story about a dragon."))
    assert problems(own, "write a story about a dragon") == ()


def test_the_example_words_are_fine_when_the_request_uses_them() -> None:
    plan = make((G, "Write a short story about a lighthouse keeper."), (T, "{step1}"))
    request = "write a story about a lighthouse keeper and translate it to german"
    assert problems(plan, request) == ()


def test_a_pattern_filled_for_the_request_is_not_a_copy() -> None:
    seasons = ("spring", "summer", "autumn", "winter")
    plan = make(*((G, f"Write a haiku about {season}.") for season in seasons))
    assert problems(plan, "write a haiku about each season") == ()


def test_examples_copied_side_by_side_are_no_pattern_of_the_request() -> None:
    plan = make(
        (G, "Write a poem about the moon."),
        (G, "Write a haiku about spring."),
        (G, "Write a limerick about a cat."),
    )
    copied = [p.split(" from ")[0] for p in problems(plan, "write a poem about the moon")]
    assert copied == ["step2 copies 'spring'", "step3 copies 'cat'"]


# --- 3. unrelated steps -------------------------------------------------------------------------


def test_a_step_sharing_no_word_with_the_request_is_named() -> None:
    plan = make(
        (G, "Write a joke about programmers."),
        (G, "Explain how photosynthesis works in green plants."),
    )
    assert problems(plan, "write a joke about programmers") == (
        "step2 does not belong to the request: the input 'Explain how photosynthesis works in "
        "green plants.' shares no word with it and reads no other step; remove the step or "
        "rewrite it for the request",
    )


def test_steps_with_the_same_unrelated_input_are_named_in_one_line() -> None:
    plan = make(*[(C, "Fooled me once!")] * 2)
    assert [p for p in problems(plan, "write a joke about programmers") if "belong" in p] == [
        "step1 and step2 do not belong to the request: the input 'Fooled me once!' shares no "
        "word with it and reads no other step; remove the step or rewrite it for the request"
    ]


@pytest.mark.parametrize(
    ("request_text", "step_input"),
    [
        ("write some poems about rain", "Write a poem on rainy weather."),
        ("write a story and give me a summary", "Summarize the story."),
        ("Traduce al inglés: 'buenos días'", "Translate to English: buenos días"),
        ("écris une blague sur les chats", "Écris une blague drôle sur un chat."),
        ("write a haiku about the ocean", "Write a haiku."),  # too little to judge
    ],
)
def test_word_forms_and_task_words_across_languages_relate(
    request_text: str, step_input: str
) -> None:
    assert problems(make((G, step_input)), request_text) == ()


def test_words_compare_by_form_and_task_words_across_languages() -> None:
    assert split_words("Traduce, traduis, Übersetze: translation") == ("translate",) * 4
    assert split_words("Résumé, summary") == ("summarize", "summarize")
    assert same_word("poem", "poems")
    assert same_word("cat", "cats")
    assert not same_word("cat", "dog")
    assert not same_word("sea", "ski")


@pytest.mark.parametrize(
    "request_text",
    [
        "Escribe un cuento corto sobre un gato y luego resúmelo.",
        "写一个关于猫的短篇故事，然后总结一下",
    ],
)
def test_a_step_in_another_language_than_the_request_is_not_judged(request_text: str) -> None:
    plan = make((G, "Write a short story about a cat."), (S, "{step1}"))
    assert problems(plan, request_text) == ()


@given(
    st.text(max_size=80),
    st.lists(
        st.tuples(
            st.sampled_from(sorted(TOOLS)),
            st.text(max_size=60),
            st.dictionaries(st.sampled_from(["target_lang", "languages"]), st.text(max_size=9)),
        ),
        min_size=1,
        max_size=9,
    ),
)
@settings(max_examples=200, deadline=None)
def test_any_text_gives_lines_and_never_an_error(request_text: str, steps: list[Any]) -> None:
    found = plan_problems(make(*steps), request_text, examples=EXAMPLES, max_parts=2)
    assert all(isinstance(p, str) and p and "\n" not in p for p in found)


def test_steps_that_only_read_other_steps_are_never_unrelated() -> None:
    plan = make((G, "Write a limerick about a frog."), (S, "{step1}"), (C, "Result:\n{step2}"))
    assert problems(plan, "write a limerick about a frog and summarize it") == ()


# --- 4. too many steps --------------------------------------------------------------------------


def test_more_steps_than_parts_are_named() -> None:
    plan = make(*((G, f"Write a joke about cats, number {i}.") for i in range(1, 9)))
    assert problems(plan, "tell me a joke about cats", max_parts=1) == (
        "the plan has 8 steps but the request has only one part; use one step",
    )


def test_one_more_step_is_fine_when_it_combines_the_others() -> None:
    request = "write a poem about the sea and a story about a sailor, then combine them"
    combined = make(
        (G, "Write a poem about the sea."),
        (G, "Write a story about a sailor."),
        (C, "{step1}\n\n{step2}"),
    )
    assert problems(combined, request, max_parts=2) == ()
    extra = make(
        (G, "Write a poem about the sea."),
        (G, "Write a story about a sailor."),
        (S, "{step2}"),
    )
    (problem,) = problems(extra, request, max_parts=2)
    assert problem == (
        "the plan has 3 steps but the request has 2 parts; use one step per part, and at most "
        "one more that combines them"
    )


# --- 5. translations of nothing -----------------------------------------------------------------


@pytest.mark.parametrize("request_text", ["translate to french and spanish", "traduis en anglais"])
def test_translating_nothing_when_the_request_gives_no_text(request_text: str) -> None:
    plan = make(
        (T, "Translate to French.", {"target_lang": "French"}),
        (T, "spanish", {"target_lang": "Spanish"}),
    )
    assert problems(plan, request_text) == (
        f"{NOTHING_TO_TRANSLATE}: the request gives none (step1 and step2 would translate only "
        "an instruction); ask the user for it",
    )


def test_a_step_that_reads_the_translations_is_no_text_to_translate() -> None:
    plan = make(
        (T, "", {"target_lang": "Spanish"}),
        (T, "", {"target_lang": "French"}),
        (C, "{step1}\n\n{step2}"),
    )
    request = "translate this into Spanish and into French, then show both versions together"
    (problem,) = problems(plan, request)
    assert problem.startswith(f"{NOTHING_TO_TRANSLATE}: the request gives none (step1 and step2")


def test_translating_nothing_after_a_writing_step_should_read_it() -> None:
    plan = make((G, "Write a joke."), (T, "", {"target_lang": "French"}))
    assert problems(plan, "write a joke and translate it to french") == (
        "step2 has nothing to translate (its input is only an instruction); make its input "
        "{step1}, the output it should translate, and list step1 in depends_on",
    )


def test_translating_nothing_when_the_request_has_the_text() -> None:
    plan = make(("translate_many", "Translate it.", {"languages": "French, German"}))
    assert problems(plan, "translate 'good morning' into French and German") == (
        "step1 has nothing to translate (its input is only an instruction); put the text to "
        "translate in its input, or a reference to the step that writes it",
    )


def test_a_translation_with_its_own_text_is_fine() -> None:
    plan = make(
        (T, "Translate to French: good morning", {"target_lang": "French"}),
        (T, "good morning", {"target_lang": "German"}),
    )
    assert problems(plan, "translate 'good morning' into French and German") == ()


# --- good plans for real requests ---------------------------------------------------------------


def _rules_plans_for_heldout_requests() -> list[tuple[str, Plan]]:
    entries = yaml.safe_load((REPO / "bench" / "requests" / "heldout.yaml").read_text("utf-8"))
    planned = [(entry["request"], rules_plan(entry["request"], TOOLS)) for entry in entries]
    return [(request, plan) for request, plan in planned if plan is not None]


RULES_PLANS = _rules_plans_for_heldout_requests()


@pytest.mark.parametrize(
    ("request_text", "plan"), RULES_PLANS, ids=[r[:40] for r, _ in RULES_PLANS]
)
def test_rules_plans_for_the_heldout_requests_pass(request_text: str, plan: Plan) -> None:
    assert problems(plan, request_text, max_parts=len(plan.steps)) == ()


GERMAN_NEWS = (
    "Die Stadtwerke haben angekündigt, dass die Wasserpreise im nächsten Jahr um vier Prozent "
    "steigen."
)
GOOD_PLANS: list[tuple[str, Plan, int]] = [
    (
        "Can you write me a short poem about autumn leaves?",
        make((G, "Write a short poem about autumn leaves.")),
        1,
    ),
    ("What's the capital of Australia?", make((G, "What is the capital of Australia?")), 1),
    (
        "how many words are in 'the quick brown fox jumps over the lazy dog'",
        make(("word_count", "the quick brown fox jumps over the lazy dog")),
        1,
    ),
    ("pause for 2 seconds", make(("delay", "", {"seconds": "2"})), 1),
    ("écris une blague sur les chats", make((G, "Write a joke about cats.")), 1),
    (
        "Traduce al inglés: 'Me gustaría reservar una mesa para dos personas esta noche.'",
        make(
            (
                T,
                "Me gustaría reservar una mesa para dos personas esta noche.",
                {"target_lang": "English"},
            )
        ),
        1,
    ),
    (
        f"Fasse bitte diesen Text zusammen: {GERMAN_NEWS}",
        make((S, GERMAN_NEWS)),
        1,
    ),
    (
        "write a story about a dragon, summarize it, then translate the summary to french",
        make(
            (G, "Write a story about a dragon."),
            (S, "{step1}"),
            (T, "{step2}", {"target_lang": "French"}),
        ),
        3,
    ),
    (
        "Écris un court poème sur Paris puis traduis-le en anglais.",
        make((G, "Écris un court poème sur Paris."), (T, "{step1}", {"target_lang": "English"})),
        2,
    ),
    (
        "Escribe un cuento corto sobre un gato y luego resúmelo.",
        make((G, "Write a short story about a cat."), (S, "{step1}")),
        2,
    ),
    (
        "write a story about a lighthouse, summarize it, translate the summary into German, "
        "then put it in uppercase",
        make(
            (G, "Write a story about a lighthouse."),
            (S, "{step1}"),
            (T, "{step2}", {"target_lang": "German"}),
            ("upper", "{step3}"),
        ),
        4,
    ),
    (
        "For each of Paris, Rome and Berlin, write a two-sentence travel tip.",
        make(
            (G, "Write a two-sentence travel tip for Paris."),
            (G, "Write a two-sentence travel tip for Rome."),
            (G, "Write a two-sentence travel tip for Berlin."),
        ),
        3,
    ),
    (
        "Übersetze 'Vielen Dank für Ihre Hilfe' ins Englische, Französische und Spanische.",
        make(
            (T, "Vielen Dank für Ihre Hilfe", {"target_lang": "English"}),
            (T, "Vielen Dank für Ihre Hilfe", {"target_lang": "French"}),
            (T, "Vielen Dank für Ihre Hilfe", {"target_lang": "Spanish"}),
        ),
        3,
    ),
    (
        "Escribe tres chistes: uno sobre médicos, uno sobre abogados y uno sobre profesores.",
        make(
            (G, "Escribe un chiste sobre médicos."),
            (G, "Escribe un chiste sobre abogados."),
            (G, "Escribe un chiste sobre profesores."),
        ),
        3,
    ),
    (
        "write a haiku about each season",
        make(*((G, f"Write a haiku about {s}.") for s in ("spring", "summer", "autumn", "winter"))),
        4,
    ),
    (
        "Can you write slogans for a coffee shop, a bakery and a bike repair shop?",
        make(
            (G, "Write a slogan for a coffee shop."),
            (G, "Write a slogan for a bakery."),
            (G, "Write a slogan for a bike repair shop."),
            (C, "{step1}\n{step2}\n{step3}"),
        ),
        3,
    ),
    (
        "i need a product description of our new headphones in english, german and french",
        make(
            (G, "Write a product description of our new headphones."),
            ("translate_many", "{step1}", {"languages": "German, French"}),
        ),
        2,
    ),
    (
        "Schreibe einen Witz über Katzen und einen über Hunde und fasse dann beide zusammen.",
        make(
            (G, "Schreibe einen Witz über Katzen."),
            (G, "Schreibe einen Witz über Hunde."),
            (S, "{step1}\n\n{step2}"),
        ),
        3,
    ),
    (
        "Escribe un haiku sobre el mar y traduce 'buenos días' al alemán.",
        make(
            (G, "Escribe un haiku sobre el mar."),
            (T, "buenos días", {"target_lang": "German"}),
        ),
        2,
    ),
    (
        "summarize the history of rome and write a poem about venice",
        make((G, "Summarize the history of Rome."), (G, "Write a poem about Venice.")),
        2,
    ),
    (
        "write a short story about a lighthouse keeper, then summarize it",
        make((G, "Write a short story about a lighthouse keeper."), (S, "{step1}")),
        2,
    ),
]


@pytest.mark.parametrize(
    ("request_text", "plan", "parts"), GOOD_PLANS, ids=[r[:40] for r, _, _ in GOOD_PLANS]
)
def test_good_plans_for_real_requests_pass(request_text: str, plan: Plan, parts: int) -> None:
    assert problems(plan, request_text, max_parts=parts) == ()
