"""``evolve nodes``: the node registry (list, show, run, test, add, rm)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from code_evolver.cli import options

if TYPE_CHECKING:
    from code_evolver.evolve.node_store import StoredNode
    from code_evolver.evolve.proving import TestReport
    from code_evolver.result import RunResult


@click.group("nodes", invoke_without_command=True)
@options.these("config", "json")
@click.pass_context
def nodes_command(ctx: click.Context) -> None:
    """List the stored nodes with their fitness (in $EVOLVE_HOME/nodes).

    \b
    evolve nodes show NAME                  its description, code, tests and record
    evolve nodes run NAME [--input JSON]    run it (also: python .../main.py < input.json)
    evolve nodes test NAME                  run its tests in the strict sandbox
    evolve nodes add NAME SCRIPT --tests TESTS --description TEXT
    evolve nodes rm NAME
    """
    if ctx.invoked_subcommand is not None:
        return
    from code_evolver.cli import terminal
    from code_evolver.display.nodes_table import nodes_table
    from code_evolver.evolve.node_store import NodeStore

    nodes = NodeStore().all()
    if options.current().as_json:
        terminal.emit_json([_node_json(node) for node in nodes])
    else:
        terminal.stdout_console().print(nodes_table(nodes))


@nodes_command.command("show")
@click.argument("name")
@options.these("json")
def show_command(name: str) -> None:
    """Show a node: description, record, code and tests."""
    from rich.syntax import Syntax

    from code_evolver.cli import terminal
    from code_evolver.evolve.node_store import NodeStore

    node = NodeStore().find(name)
    if options.current().as_json:
        document = _node_json(node) | {
            "code": node.main.read_text(encoding="utf-8"),
            "tests": node.tests.read_text(encoding="utf-8"),
        }
        terminal.emit_json(document)
        return
    out = terminal.stdout_console()
    out.print(f"[bold]{node.name}[/] v{node.version} · {_record(node)}")
    out.print(node.description, markup=False)
    out.print(f"[dim]{node.folder}[/]")
    for path in (node.main, node.tests):
        out.print(f"\n[bold]{path.name}[/]")
        out.print(Syntax(path.read_text(encoding="utf-8"), "python", line_numbers=True))


@nodes_command.command("test")
@click.argument("name")
@options.these("config", "json")
def test_command(name: str) -> None:
    """Run a stored node's tests in the strict sandbox."""
    from code_evolver.cli import terminal
    from code_evolver.evolve.node_store import NodeStore

    node = NodeStore().find(name)
    report = _prove(node.folder)
    if options.current().as_json:
        terminal.emit_json(_report_json(report))
    else:
        _show_report(report)
    click.get_current_context().exit(0 if report.passed else 1)


@nodes_command.command("run")
@click.argument("name")
@click.option(
    "--input",
    "given",
    metavar="JSON",
    help='The node\'s input: {"input": ..., "params": {...}}, or a JSON string (the text).',
)
@options.these("config", *options.MODEL, "full", "json")
def run_command(name: str, given: str | None) -> None:
    """Run a stored node once, its tool calls served by this config's tools."""
    from code_evolver.cli import piped, show
    from code_evolver.cli.present import run_shown
    from code_evolver.evolve.node_store import NodeStore
    from code_evolver.organizer import organize
    from code_evolver.plan import Plan
    from code_evolver.session import Session
    from code_evolver.tools.node import NodeTool

    store = NodeStore()
    node = store.find(name)
    text, params = _node_input(given if given is not None else piped.read_input(None) or '""')
    opts = options.current()
    tool = NodeTool(node.name, node.main, description=node.description)
    session = Session(opts.config(), tools={node.name: tool})
    step = {"step_id": node.name, "tool": node.name, "input": "{input}", "params": params}
    plan = Plan.from_data({"request": f"run node {node.name}", "steps": [step]})
    organized = organize(plan, session.registry)

    async def main() -> RunResult:
        async with session:
            return await session.run(organized, input_text=text)

    result = run_shown(session, organized, main, as_json=opts.as_json, full=opts.full)
    store.record_run(node, result.ok, result.run_s)
    click.get_current_context().exit(show.exit_code(result))


@nodes_command.command("add")
@click.argument("name")
@click.argument("script", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--tests",
    "tests_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Its tests: test_* functions with plain asserts, importing `from main import main`.",
)
@click.option("--description", required=True, help="What it does (reuse is matched on it).")
@options.these("config", "json")
def add_command(name: str, script: Path, tests_file: Path, description: str) -> None:
    """Add your own node to the registry: it is checked, its tests run in the strict
    sandbox, and only a node whose tests pass is stored (as the next version of NAME)."""
    import tempfile

    from code_evolver.cli import terminal
    from code_evolver.errors import UserError
    from code_evolver.evolve.code import allowed_imports, problems, with_entry_point
    from code_evolver.evolve.generator import stage
    from code_evolver.evolve.node_store import NodeStore, check_name

    check_name(name)
    allowed = allowed_imports(options.current().config().evolve.allowed_imports)
    given, tests = script.read_text(encoding="utf-8"), tests_file.read_text(encoding="utf-8")
    code = with_entry_point(given)  # as for a written node: the guard needs no one's help
    found = [f"{script}: {p}" for p in problems(code, allowed, node=True)]
    found += [
        f"{tests_file}: {_tests_problem(p, {script.stem, name})}"
        for p in problems(tests, allowed, node=False)
    ]
    if found:
        raise UserError(found)
    if code != given:
        terminal.stderr_console().print(
            f'[dim]added to {script.name}\'s stored copy: if __name__ == "__main__": '
            "run_node(main)[/]"
        )
    with tempfile.TemporaryDirectory() as staging:
        stage(Path(staging), code, tests)
        report = _prove(Path(staging))
    if not report.passed:
        _show_report(report)
        raise UserError(f"node {name} was not stored: {report.summary()}")
    meta = {
        "description": description,
        "model": "person",
        "attempts": 1,
        "test_result": _report_json(report),
    }
    node = NodeStore().add(name, code, tests, meta)
    if options.current().as_json:
        terminal.emit_json(_node_json(node))
    else:
        terminal.stdout_console().print(
            f"stored {node.name} v{node.version} ({report.summary()}): {node.folder}"
        )


def _tests_problem(problem: str, own: set[str]) -> str:
    """A test that imports the node by its file's name is told how it is stored."""
    if any(f"import of {module!r} is not allowed" in problem for module in own):
        return f"{problem}; a node is stored as main.py, so its tests say: from main import main"
    return problem


@nodes_command.command("rm")
@click.argument("name")
@options.these("json")
def rm_command(name: str) -> None:
    """Remove a node, every version of it."""
    from code_evolver.cli import terminal
    from code_evolver.evolve.node_store import NodeStore

    removed = NodeStore().remove(name)
    if options.current().as_json:
        terminal.emit_json({"removed": name, "versions": removed})
        return
    terminal.stdout_console().print(f"removed {name} ({removed} version{'s' * (removed != 1)})")


# ---------------------------------------------------------------------- helpers


def _prove(folder: Path) -> TestReport:
    from code_evolver.cli import terminal
    from code_evolver.evolve.proving import run_tests

    config = options.current().config()
    return terminal.run_async(
        lambda: run_tests(folder, config.execution, timeout_s=config.evolve.test_timeout_s),
        lambda: None,
    )


def _node_input(given: str) -> tuple[str, dict[str, Any]]:
    from code_evolver.errors import UserError

    try:
        value = json.loads(given)
    except ValueError:
        return given, {}  # plain text: the input itself
    if isinstance(value, dict) and set(value) <= {"input", "params"}:
        params = value.get("params") or {}
        if not isinstance(params, dict):
            raise UserError('--input: "params" must be a JSON object')
        text = value.get("input", "")
        return text if isinstance(text, str) else json.dumps(text), params
    return value if isinstance(value, str) else json.dumps(value), {}


def _record(node: StoredNode) -> str:
    runtime = node.median_runtime_s
    median = f", median {runtime:.3f}s" if runtime is not None else ""
    return f"fitness {node.fitness:.0%} ({node.runs} runs, {node.failures} failed{median})"


def _node_json(node: StoredNode) -> dict[str, Any]:
    return {
        "name": node.name,
        "version": node.version,
        "folder": str(node.folder),
        "fitness": node.fitness,
        "median_runtime_s": node.median_runtime_s,
        **node.meta,
    }


def _report_json(report: TestReport) -> dict[str, Any]:
    return {
        "passed": report.passed,
        "tests": report.tests,
        "failed": [list(f) for f in report.failed],
        "seconds": round(report.seconds, 3),
        "problem": report.problem,
    }


def _show_report(report: TestReport) -> None:
    from code_evolver.cli import terminal

    err = terminal.stderr_console()
    colour = "green" if report.passed else "red"
    err.print(f"[{colour}]{report.summary()}[/] in {report.seconds:.2f}s")
    if not report.passed:
        err.print(report.failures_text(), markup=False, highlight=False)
