"""The chat's slash commands: ``/help``, ``/plan``, ``/run``, ``/tools``, ``/backend``, ...

Each command is one async function taking the chat and the text after its name; the table
gives the REPL its completion and ``/help`` its lines. An unknown command gets the closest
names.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from code_evolver.display.safe import shown
from code_evolver.errors import EvolverError, MissingInput, problems_of
from code_evolver.suggest import did_you_mean

if TYPE_CHECKING:
    from rich.console import Console

    from code_evolver.chat.session import ChatSession
    from code_evolver.result import RunResult

Handler = Callable[["ChatSession", str], Awaitable[bool]]
T = TypeVar("T")


async def _help(chat: ChatSession, _: str) -> bool:
    chat.out.print("Each message is a request: it is planned, run, and its answer becomes the")
    chat.out.print('context of the next ("now translate that to german"; {last} names it).')
    for name, (usage, what, _handler) in COMMANDS.items():
        chat.out.print(f"  [bold]/{name}{usage}[/]  {what}")
    chat.out.print("Esc-Enter: a new line · Ctrl-C: stop the running request · Ctrl-D: quit")
    return True


async def _plan(chat: ChatSession, request: str) -> bool:
    from code_evolver.cli import show
    from code_evolver.display.plan_tree import plan_tree

    if not request:
        chat.err.print("usage: /plan REQUEST (shows the plan, runs nothing)")
        return True
    outcome = await chat.in_context(
        chat.expanded(request),
        lambda planned, given: chat.session.plan(
            planned, has_input=given is not None, context=chat.conversation.for_planner()
        ),
    )
    chat.out.print(plan_tree(outcome.organized, chat.session.registry))
    chat.out.print(f"[dim]{show.planner_line(outcome, chat.session.llm.identity)}[/]")
    show.warnings(chat.err, outcome.warnings)
    return True


async def _run(chat: ChatSession, path: str) -> bool:
    from code_evolver.organizer import organize
    from code_evolver.plan import load_plan

    if not path:
        chat.err.print("usage: /run PLAN.json")
        return True
    plan = await asyncio.to_thread(lambda: load_plan(os.path.expanduser(path)))
    organized = organize(plan, chat.session.registry)
    if organized.reads_input and chat.conversation.last is None:
        raise MissingInput(
            "this plan reads {input}, which in a chat is the last answer, and there is none "
            "yet: ask for something first"
        )
    return await _shown(chat, chat.session.run(organized, input_text=chat.conversation.last))


async def _shown(chat: ChatSession, running: Awaitable[RunResult]) -> bool:
    """A run with the live view, then its results; it becomes the toolbar's last run."""
    from code_evolver.cli import show

    with chat.present.running():
        result = await running
    show.results(chat.out, chat.err, result, markdown=show.markdown_tools(chat.session.registry))
    chat.last_result = result
    return True


async def _tools(chat: ChatSession, _: str) -> bool:
    from code_evolver import catalogue
    from code_evolver.display.tools_table import tools_table
    from code_evolver.launch.launcher import Launcher

    launcher = Launcher(chat.config.execution)
    chat.out.print(tools_table(catalogue.rows(chat.session.registry, launcher)))
    return True


async def _backend(chat: ChatSession, name: str) -> bool:
    if name and not await _switched(chat, backend=name):
        return True
    choice = await chat.session.llm.resolve()
    reasons = "; ".join(choice.reasons)
    chat.out.print(f"backend: {chat.session.llm.identity} ({reasons})", markup=False)
    return True


async def _model(chat: ChatSession, name: str) -> bool:
    if name and not await _switched(chat, model=name):
        return True
    await chat.session.llm.resolve()  # auto picks first: the model's one name, never "auto:"
    chat.out.print(f"model: {chat.session.llm.identity}", markup=False)
    return True


async def _switched(chat: ChatSession, **change: str) -> bool:
    """Switch the backend or model, and make sure it serves (loading a model says so); when
    it cannot, say why and go back to what served before."""
    from code_evolver.errors import BackendError

    config, switched = chat.config, dict(chat.switched)
    await chat.switch(**change)
    try:
        await chat.session.llm.check()
    except BackendError as exc:
        say_error(chat.err, exc)
        await chat.use(config)
        chat.switched = switched
        kept = chat.session.llm.known_identity or f"the {chat.config.llm.backend} backend"
        chat.err.print(f"[dim]still on {shown(kept)}[/]")
        return False
    return True


async def _config(chat: ChatSession, _: str) -> bool:
    from code_evolver.cli.config_cmd import config_text
    from code_evolver.display.safe import terminal_safe

    chat.out.print(terminal_safe(config_text(chat.config_path)), markup=False, highlight=False)
    for key, value in chat.switched.items():
        chat.out.print(f"llm.{key}: {value}  # set in this chat (/{key})", markup=False)
    return True


async def _context(chat: ChatSession, _: str) -> bool:
    chat.out.print(chat.conversation.describe(), markup=False)
    return True


async def _clear(chat: ChatSession, _: str) -> bool:
    chat.conversation.clear()
    chat.out.print("context cleared: the next request starts afresh")
    return True


async def _save(chat: ChatSession, path: str) -> bool:
    if not path:
        chat.err.print("usage: /save FILE.md")
        return True
    lines = ["# Code Evolver chat", ""]
    for said, answered in chat.transcript:
        lines += [f"## > {said}", "", answered, ""]
    try:
        target = await asyncio.to_thread(_write, path, "\n".join(lines))
    except OSError as exc:
        chat.err.print(
            f"[red]error:[/] cannot write {shown(path)}: {shown(str(exc.strerror or exc))}"
        )
        return True
    count = len(chat.transcript)
    chat.out.print(f"saved {count} turn{'s' * (count != 1)} to {target}", markup=False)
    return True


def _write(path: str, text: str) -> str:
    target = os.path.expanduser(path)
    with open(target, "w", encoding="utf-8") as f:
        f.write(text)
    return target


async def _runs(chat: ChatSession, limit: str) -> bool:
    from code_evolver.display.history_views import runs_table
    from code_evolver.history import store

    count = int(limit) if limit.isdigit() and int(limit) > 0 else 10
    runs = await _from_history(chat, lambda db: store.list_runs(db, limit=count))
    if runs is not None:
        chat.out.print(runs_table(runs))
    return True


async def _show(chat: ChatSession, argument: str) -> bool:
    from code_evolver.display.history_views import run_detail
    from code_evolver.display.timeline import gantt
    from code_evolver.history import store

    run_id, _, flag = argument.partition(" ")
    if not run_id:
        chat.err.print("usage: /show ID [--gantt]  (/runs lists the ids)")
        return True
    run = await _from_history(chat, lambda db: store.find_run(db, run_id))
    if run is not None:
        timeline = flag.strip() == "--gantt"
        chat.out.print(gantt(run, chat.out.width) if timeline else run_detail(run))
    return True


async def _resume(chat: ChatSession, run_id: str) -> bool:
    from code_evolver.cli import show
    from code_evolver.history import store
    from code_evolver.history.resume import resumption

    if not run_id:
        chat.err.print("usage: /resume ID  (/runs lists the ids)")
        return True
    run = await _from_history(chat, lambda db: store.find_run(db, run_id))
    if run is None:
        return True
    again = resumption(run, chat.session.registry)
    if not again.rerun:
        chat.err.print(again.headline(run.run_id))
        return True
    chat.err.print(f"[dim]{again.headline(run.run_id)}[/]")
    show.warnings(chat.err, again.notes)
    return await _shown(chat, chat.session.resume(run, again))


async def _from_history(chat: ChatSession, read: Callable[[Any], T]) -> T | None:
    """``read(db)`` in a thread; None (after saying why) without a history or a match."""
    from code_evolver.history import store

    if chat.session.history is None:
        chat.err.print("the run history is off (execution.history: false)")
        return None
    chat.session.history.flush()  # the runs of this chat are in it

    def query() -> T:
        db = store.connect(create=False)
        try:
            return read(db)
        finally:
            db.close()

    try:
        return await asyncio.to_thread(query)
    except FileNotFoundError:
        chat.err.print("no runs are stored yet")
    except (LookupError, store.HistoryError) as exc:
        chat.err.print(f"[red]error:[/] {shown(str(exc))}")
    return None


async def _quit(chat: ChatSession, _: str) -> bool:
    return False


COMMANDS: dict[str, tuple[str, str, Handler]] = {
    "help": ("", "this list", _help),
    "plan": (" REQUEST", "show the plan of REQUEST, run nothing", _plan),
    "run": (" FILE", "run a saved plan (its {input} is the last answer)", _run),
    "tools": ("", "the tools plans can use", _tools),
    "backend": (
        " [NAME]",
        "the LLM backend, or switch to NAME (auto, ollama, embedded, openai)",
        _backend,
    ),
    "model": (" [NAME]", "the model, or switch to NAME", _model),
    "config": ("", "the merged config, each value with its file", _config),
    "context": ("", "what a follow-up builds on", _context),
    "clear": ("", "forget the context", _clear),
    "save": (" FILE", "the conversation as Markdown", _save),
    "runs": (" [N]", "the last N runs from the history (10)", _runs),
    "show": (" ID [--gantt]", "one run: its steps, outputs, calls; or its timeline", _show),
    "resume": (" ID", "run again what did not succeed in run ID", _resume),
    "quit": ("", "leave (Ctrl-D too)", _quit),
}


async def run_command(chat: ChatSession, text: str) -> bool:
    """``/name args``; False for ``/quit``."""
    name, _, argument = text[1:].partition(" ")
    entry = COMMANDS.get(name.lower())
    if entry is None:
        hint = did_you_mean(name, COMMANDS) or "; /help lists them"
        chat.err.print(f"[red]error:[/] unknown command /{shown(name)}{shown(hint)}")
        return True
    try:
        return await entry[2](chat, argument.strip())
    except EvolverError as exc:
        say_error(chat.err, exc)
        return True


def say_error(console: Console, exc: EvolverError) -> None:
    """One ``error:`` line per problem, as the command line prints them (a plan with five
    mistakes shows all five, not the first and a count)."""
    for problem in problems_of(exc):
        console.print(f"[red]error:[/] {shown(problem)}")
