"""Options shared by commands, accepted before the command or after it.

``evolve --json run p.json`` and ``evolve run p.json --json`` mean the same thing: every option
stores its value in the context's shared ``meta`` (a value given after the command wins), and
commands read the merged result with :func:`current`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from pathlib import Path

    from code_evolver.config import Config

F = TypeVar("F", bound=Callable[..., Any])
_META = "evolve.options"


@dataclass(frozen=True)
class Options:
    config_path: Path | None = None
    backend: str | None = None
    model: str | None = None
    endpoint: str | None = None
    max_parallel: int | None = None
    as_json: bool = False
    scheduling: str | None = None
    on_failure: str | None = None
    planner: str | None = None
    no_cache: bool = False
    input_path: Path | None = None
    full: bool = False
    svg_path: Path | None = None
    reuse: bool = False
    evolve: bool = False
    no_reuse: bool = False

    def config(self) -> Config:
        """config.yaml (found as documented) with these options applied on top."""
        from code_evolver.config import load_config

        return (
            load_config(self.config_path)
            .with_execution(
                max_parallel=self.max_parallel,
                scheduling=self.scheduling,
                on_failure=self.on_failure,
            )
            .with_llm(
                backend=self.backend,
                model=self.model,
                endpoint=self.endpoint,
                endpoints=[] if self.backend and not self.endpoint else None,
            )
            .with_planner(mode=self.planner)
            .with_evolve(reuse=False if self.no_reuse else None)
        )


def current(ctx: click.Context | None = None) -> Options:
    ctx = ctx or click.get_current_context()
    values = dict(ctx.meta.get(_META, {}))
    paths = [
        key for key in ("config_path", "input_path", "svg_path") if isinstance(values.get(key), str)
    ]
    if paths:  # pathlib only when a path was given: `evolve --help` does not pay for it
        from pathlib import Path

        values |= {key: Path(values[key]) for key in paths}
    return Options(**values)


def given_names(ctx: click.Context) -> set[str]:
    """The options given so far (by their parameter names)."""
    return set(ctx.meta.get(_META, {}))


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value is not False and param.name:
        ctx.meta.setdefault(_META, {})[param.name] = value
    return value


def _option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    return click.option(*decls, callback=_remember, expose_value=False, **attrs)


_OPTIONS: dict[str, Callable[[F], F]] = {
    "config": _option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        help="The project's config.yaml, stacked on the packaged defaults and "
        "$EVOLVE_HOME/config.yaml (default: $CODE_EVOLVER_CONFIG, else ./config.yaml).",
    ),
    "backend": _option(
        "--backend",
        type=click.Choice(["auto", "ollama", "embedded", "openai"]),
        help="LLM backend (default: llm.backend, auto: Ollama if it has the model, else the "
        "embedded model); given, it is used instead of llm.endpoints.",
    ),
    "model": _option("--model", help="Model of the backend (embedded: a GGUF file path)."),
    "endpoint": _option(
        "--endpoint",
        metavar="NAME",
        help="Send every LLM call to this endpoint of llm.endpoints (default: the least busy).",
    ),
    "max_parallel": _option(
        "--max-parallel",
        type=click.IntRange(min=1),
        help="Most steps running at once (config: execution.max_parallel).",
    ),
    "json": _option(
        "--json",
        "as_json",
        is_flag=True,
        default=None,
        is_eager=True,
        help="Print one JSON document on stdout instead of the rich display.",
    ),
    "scheduling": _option(
        "--scheduling",
        type=click.Choice(["eager", "waves"]),
        help="eager: a step starts when its last dependency succeeds; waves: a barrier after "
        "each wave.",
    ),
    "on_failure": _option(
        "--on-failure",
        type=click.Choice(["continue", "fail_fast"]),
        help="continue: skip the failed step's dependents, finish the rest; fail_fast: cancel "
        "everything.",
    ),
    "planner": _option(
        "--planner",
        type=click.Choice(["auto", "rules", "clauses", "llm"]),
        help="auto (default): the rules when they understand the request, else the embedded "
        "model makes bounded choices in their plan, or a stronger model (Ollama, "
        "OpenAI-compatible) writes it; rules: no model; clauses: the rules with model "
        "choices; llm: the model writes the whole plan.",
    ),
    "no_cache": _option(
        "--no-cache",
        is_flag=True,
        default=None,
        help="Plan afresh instead of reusing the plan cached for this request.",
    ),
    "input": _option(
        "--input",
        "input_path",
        type=click.Path(dir_okay=False, allow_dash=True),
        metavar="FILE",
        help="The text the request works on ({input} in a plan); - reads stdin. Text piped "
        "to evolve is read without it.",
    ),
    "reuse": _option(
        "--reuse",
        is_flag=True,
        default=None,
        help="Take a step's output from an earlier run that did the same work (same tool, "
        "input and params) instead of running it again.",
    ),
    "evolve": _option(
        "--evolve",
        is_flag=True,
        default=None,
        help="Have a node written (tested in the sandbox, kept, reused) for each step the "
        "generic writer would do.",
    ),
    "no_reuse": _option(
        "--no-reuse",
        is_flag=True,
        default=None,
        help="Write a new node even when a stored one does what a generate step asks.",
    ),
    "svg": _option(
        "--svg",
        "svg_path",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="Also draw the run's timeline (one bar per step) into FILE, a standalone SVG.",
    ),
    "full": _option(
        "--full",
        is_flag=True,
        default=None,
        help="Show every line of every output (intermediate ones are clipped to 12 lines "
        "otherwise).",
    ),
}


def these(*names: str) -> Callable[[F], F]:
    """Decorate a command with the named options, in this order in its help."""

    def decorate(f: F) -> F:
        for name in reversed(names):
            f = _OPTIONS[name](f)
        return f

    return decorate


MODEL = ("backend", "model", "endpoint")
EXECUTION = ("max_parallel", "scheduling", "on_failure")
PLANNING = ("planner", "no_cache")
EVOLVE = ("evolve", "no_reuse")
REQUEST = (
    "config", *MODEL, *PLANNING, *EXECUTION, *EVOLVE, "reuse", "input", "full", "svg", "json"
)  # fmt: skip
"""Everything a request (``evolve "..."``) uses: accepted before it too, so the group has them."""
common_options = these("config", "json")
"""What every command takes: which config, and JSON output."""
