"""The LLM overseer: the prompt, the output schema, and turning a reply into a plan.

The prompt (``prompts/planner.txt``) lists the tools and shows worked examples. The schema is
tight on purpose: tool names are an enum, step ids follow ``stepN``, and every string and array
is bounded, because a small model under a loose grammar repeats itself until ``max_tokens``.
Replies are still parsed leniently (code fences, a bare list of steps, a string where a list
belongs), since not every backend decodes under a grammar.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic_core import from_json

from code_evolver.bounded import JSON_DECODER, TooLarge
from code_evolver.errors import ConfigError, PlanError
from code_evolver.llm.base import Message, assistant, system, user
from code_evolver.plan import RUN_INPUT, Plan, Step
from code_evolver.resources import data_dir
from code_evolver.templating import Ref, escape, parse
from code_evolver.tools.base import Tool

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def overseer_schema(tools: Mapping[str, Tool], max_steps: int) -> dict[str, Any]:
    """The JSON schema the overseer's reply must follow.

    Step ``n`` is ``stepN`` and may depend only on the steps before it, so the grammar itself
    rules out self-references, forward references and cycles; there are at most ``max_steps``.
    """

    def step(n: int) -> dict[str, Any]:
        earlier = [f"step{i}" for i in range(1, n)]
        depends: dict[str, Any] = {"type": "array", "maxItems": len(earlier)}
        if earlier:
            # No uniqueItems: llguidance does not support it, and llama.cpp then drops the
            # whole grammar without a word (checked by an integration test).
            depends["items"] = {"type": "string", "enum": earlier}
        return {
            "type": "object",
            "properties": {
                "step_id": {"type": "string", "const": f"step{n}"},
                "description": {"type": "string", "maxLength": 80},
                "tool": {"type": "string", "enum": sorted(tools)},
                "input": {"type": "string", "maxLength": 400},
                "params": {
                    "type": "object",
                    "additionalProperties": {"type": "string", "maxLength": 60},
                    "maxProperties": 3,
                },
                "depends_on": depends,
            },
            "required": ["step_id", "description", "tool", "input", "depends_on"],
            "additionalProperties": False,
        }

    return {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "prefixItems": [step(n) for n in range(1, max_steps + 1)],
                "items": False,
                "minItems": 1,
                "maxItems": max_steps,
            }
        },
        "required": ["steps"],
        "additionalProperties": False,
    }


def catalogue(tools: Mapping[str, Tool]) -> str:
    """One line per tool, with the params a step must give it."""
    lines = []
    for name in sorted(tools):
        tool = tools[name]
        needs = sorted(tool.required_params)
        params = f" Needs params: {', '.join(needs)}." if needs else ""
        description = tool.description or f"a {tool.kind} tool"
        lines.append(f"- {name}: {description}{params}")
    return "\n".join(lines)


def load_prompt(path: Path | None = None) -> str:
    prompt_path = path or data_dir() / "prompts" / "planner.txt"
    try:
        return prompt_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the planner prompt {prompt_path}: {exc}") from None


PIPED = (
    "(Text was piped in with this request. A step that works on it writes {input} in its "
    "input, exactly like {step1}; do not list it in depends_on.)"
)


def planner_messages(
    request: str,
    tools: Mapping[str, Tool],
    max_steps: int,
    prompt: str,
    *,
    has_input: bool = False,
    context: str | None = None,
) -> list[Message]:
    """``context``: the conversation so far (a chat's follow-up), before the request."""
    values = {"tools": catalogue(tools), "max_steps": str(max_steps)}

    def resolve(ref: Ref) -> str:
        return values.get(ref.name, str(ref))

    asked = f"{request}\n\n{PIPED}" if has_input else request
    if context:
        asked = f"{context}\n\nThe request to plan now: {asked}"
    return [system(parse(prompt).render(resolve)), user(asked)]


def repair_messages(
    messages: list[Message], reply: str, problems: tuple[str, ...]
) -> list[Message]:
    """The conversation so far plus the rejected reply and what was wrong with it."""
    listed = "\n".join(f"- {p}" for p in problems[:8])
    return [
        *messages,
        assistant(reply),
        user(f"That plan cannot run:\n{listed}\nReply with the corrected JSON plan only."),
    ]


def parse_reply(reply: str, request: str, max_steps: int) -> Plan:
    """The plan in a model's reply; PlanError (fed back to the model) when there is none.

    Any reply, however broken (nested thousands deep, numbers of any length, any shape), is a
    PlanError here and never anything else: the planner repairs, then falls back.
    """
    try:
        return _parse_reply(reply, request, max_steps)
    except RecursionError:
        raise PlanError("the reply is nested too deeply; reply with a flat JSON plan") from None
    except (ValueError, TypeError) as exc:
        if isinstance(exc, PlanError):
            raise
        raise PlanError(f"the reply cannot be read as a plan ({exc})") from None


def _parse_reply(reply: str, request: str, max_steps: int) -> Plan:
    data = extract_json(reply)
    steps = data.get("steps") if isinstance(data, dict) else data
    if not isinstance(steps, list) or not steps:
        raise PlanError('the reply has no "steps" list; reply with {"steps": [...]}')
    if len(steps) > max_steps:
        raise PlanError(f"the plan has {len(steps)} steps; use at most {max_steps}")
    return Plan.from_data(
        {"request": request, "steps": [coerce_step(s) for s in steps]}, source="plan"
    )


def extract_json(reply: str) -> Any:
    """JSON from a reply that may wrap it in prose or a code fence."""
    text = reply.strip()
    if fenced := _FENCE.search(text):
        text = fenced.group(1).strip()
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        raise PlanError("the reply contains no JSON; reply with the JSON plan only")
    text = text[min(starts) :]
    try:
        value, _ = JSON_DECODER.raw_decode(text)
    except TooLarge as exc:
        raise PlanError(f"the reply has {exc}") from None
    except json.JSONDecodeError as exc:
        if _truncated(text):
            raise PlanError("the JSON plan is cut off; use fewer or shorter steps") from None
        raise PlanError(
            f"the reply is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    return value


def _truncated(text: str) -> bool:
    """Valid JSON as far as it goes, but it stops early (the model ran out of tokens)."""
    try:
        from_json(text, allow_partial=True)
    except ValueError:
        return False
    return True


def coerce_step(raw: Any) -> Any:
    """Forgive the usual slips of small models; anything else is left for validation."""
    if not isinstance(raw, dict):
        return raw
    step = {k: v for k, v in raw.items() if k in Step.model_fields}
    if isinstance(step.get("step_id"), int):
        step["step_id"] = f"step{step['step_id']}"
    depends = step.get("depends_on")
    if isinstance(depends, str):
        step["depends_on"] = [depends] if depends else []
    elif depends is None:
        step.pop("depends_on", None)
    if "input" in step and not isinstance(step["input"], str):
        with contextlib.suppress(ValueError, RecursionError):  # else validation names it
            step["input"] = json.dumps(step["input"], ensure_ascii=False)
    if not isinstance(step.get("parallel_group", 0), int | None):
        step.pop("parallel_group")
    if "params" in step and not isinstance(step["params"], dict):
        step.pop("params")
    return step


def fallback_plan(
    request: str,
    tool: str,
    *,
    why: str = "",
    has_input: bool = False,
    context: str | None = None,
) -> Plan:
    """The whole request as one step: what runs when no valid plan could be made. In a chat
    (``context``) the step reads the conversation too, as a chat model would."""
    text = escape(request) + (f"\n\n{{{RUN_INPUT}}}" if has_input else "")
    description = f"Answer the whole request with {tool}"
    if context:
        text = f"{escape(context)}\n\nNow: {text}"
        description = "Answer the follow-up, reading the conversation"
    if why:
        description += f" (no plan: {why})"
    return Plan.from_data(
        {
            "request": request,
            "steps": [
                {
                    "step_id": "step1",
                    "description": description[:200],
                    "tool": tool,
                    "input": text,
                }
            ],
        }
    )
