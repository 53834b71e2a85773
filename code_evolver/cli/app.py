"""The ``evolve`` command group: routing, global options, errors and exit codes.

``evolve "REQUEST"`` runs the hidden ``ask`` command: any first word that is not a command name
is taken as the start of a request. Errors we raise on purpose become one ``error:`` line per
problem and the exit code of DESIGN.md: 0 success, 1 the run had failed steps, 2 user error,
3 backend unavailable, 130 interrupted. Only :func:`main` exits the process; tests call
:func:`cli`, which returns the code.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Sequence
from typing import Any

import click

from code_evolver import __version__
from code_evolver.cli import options
from code_evolver.errors import EvolverError, Interrupted

DEFAULT_COMMAND = "ask"
EXIT_OK, EXIT_INTERRUPTED = 0, Interrupted.exit_code


COMMANDS = {
    "ask": ("code_evolver.cli.ask_cmd", "ask_command", ""),
    "plan": (
        "code_evolver.cli.ask_cmd",
        "plan_command",
        "Plan REQUEST (or check PLAN_FILE) and show its waves, without running anything.",
    ),
    "run": (
        "code_evolver.cli.run_cmd",
        "run_command",
        "Run PLAN_FILE (plan JSON) and print each step's output and a summary.",
    ),
    "tools": (
        "code_evolver.cli.info_cmd",
        "tools_command",
        "List the tools that plan steps can use, from config.yaml.",
    ),
    "config": (
        "code_evolver.cli.config_cmd",
        "config_command",
        "Show the config in use: every layer merged, each value with the file that set it.",
    ),
    "chat": (
        "code_evolver.cli.chat_cmd",
        "chat_command",
        "Chat: each message is planned and run; the next can build on its answer.",
    ),
    "runs": (
        "code_evolver.cli.runs_cmd",
        "runs_command",
        "List stored runs, newest first (in $EVOLVE_HOME/history.db).",
    ),
    "resume": (
        "code_evolver.cli.runs_cmd",
        "resume_command",
        "Run again the steps of a stored run that did not succeed.",
    ),
    "nodes": (
        "code_evolver.cli.nodes_cmd",
        "nodes_command",
        "List the stored nodes with their fitness (in $EVOLVE_HOME/nodes).",
    ),
    "doctor": (
        "code_evolver.cli.info_cmd",
        "doctor_command",
        "Check the setup: which LLM backend would be used, where its model is, what is missing.",
    ),
}
"""Each command's module, its name there, and the first line of its help. A command is
imported when it runs (or shows its help), so `evolve --help` loads none of them;
tests/test_startup.py checks that these lines are the commands' own."""


class EvolveGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if name != DEFAULT_COMMAND]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in COMMANDS:
            request = self.get_command(ctx, DEFAULT_COMMAND)
            if request is not None:
                _no_misspelled_command(ctx, request, args)
            return DEFAULT_COMMAND, request, args
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            _only_options_it_takes(ctx, command, rest)
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        from code_evolver.cli import terminal  # here: `evolve --help` does not need it

        try:
            with terminal.library_warnings():
                return super().invoke(ctx)
        except EvolverError as exc:
            terminal.report_error(exc, as_json=options.current(ctx).as_json)
            ctx.exit(exc.exit_code)


def _only_options_it_takes(ctx: click.Context, command: click.Command, rest: list[str]) -> None:
    """An option given before a command that does not use it is named in a warning: `evolve
    --max-parallel 3 tools` must not look as if it did something. A warning, not an error,
    so that an alias with options (`alias ev='evolve --backend ollama'`) still serves
    `ev runs`."""
    given = options.given_names(ctx)
    if not given:
        return
    takes = {param.name for param in command.params}
    if isinstance(command, click.Group) and rest and rest[0] in command.commands:
        takes |= {param.name for param in command.commands[rest[0]].params}  # `runs show`
    unused = [
        param.opts[0]
        for param in ctx.command.params
        if param.name in given and param.name not in takes and isinstance(param, click.Option)
    ]
    if unused:
        click.echo(
            f"warning: {', '.join(unused)} {'does' if len(unused) == 1 else 'do'} nothing for "
            f"`evolve {command.name}` (`evolve {command.name} --help` lists its options)",
            err=True,
        )


def _no_misspelled_command(ctx: click.Context, request: click.Command, args: list[str]) -> None:
    """A request of one word that is a command mistyped is a typo, not a question for the
    model (`evolve doctr`, `evolve tool`, `evolve plna`); `evolve help` is `evolve --help`."""
    with_value = {
        name
        for param in request.params
        if isinstance(param, click.Option) and not param.is_flag and not param.count
        for name in param.opts
    }
    words: list[str] = []
    value_next = False
    for arg in args:
        if not value_next and not arg.startswith("-"):
            words.append(arg)
        value_next = arg in with_value and not value_next
    if words != args[:1]:
        return
    if words[0].lower() == "help":
        click.echo(ctx.get_help())
        ctx.exit()
    meant = [name for name in COMMANDS if name != DEFAULT_COMMAND and _mistyped(words[0], name)]
    if meant:
        raise click.UsageError(
            f"no command {words[0]!r}; did you mean {meant[0]!r}? (a request of one word that "
            "is a command mistyped is taken for a typo: say a little more to ask it)",
            ctx,
        )


def _mistyped(word: str, name: str) -> bool:
    """``name`` with a letter left out, two neighbours swapped or a letter doubled: the slips
    of typing, which seldom make a real word. A letter changed or added makes real words too
    often ("what" is "chat" changed, "plant" is "plan" grown), so it does not count."""
    typed = word.lower()
    if typed == name:
        return False
    if len(typed) == len(name) - 1:
        return any(name[:i] + name[i + 1 :] == typed for i in range(len(name)))
    if len(typed) == len(name):
        swaps = (name[:i] + name[i + 1] + name[i] + name[i + 2 :] for i in range(len(name) - 1))
        return typed in swaps
    if len(typed) == len(name) + 1:
        return any(
            typed[:i] + typed[i + 1 :] == name and typed[i] == typed[i - 1]
            for i in range(1, len(typed))
        )
    return False


@click.group(
    cls=EvolveGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="evolve")
@options.these(*options.REQUEST)
@click.pass_context
def main_group(ctx: click.Context) -> None:
    """Code Evolver: turn a request into a plan of steps and run every independent step at once.

    \b
    evolve "write a joke and translate it to french and spanish"
    cat notes.txt | evolve "summarize this and translate it to german"
    evolve plan "REQUEST" [--json > plan.json]   plan only, show the waves
    evolve run PLAN.json                         run a saved plan
    evolve plan --show PLAN.json                 check a plan file, show its waves
    evolve tools                                 list the tools plans can use
    evolve config                                the merged config, and which file set what
    evolve runs [show ID [--gantt] [--svg F]]    stored runs, one run's steps and timeline
    evolve resume ID                             run again what did not succeed in run ID
    evolve nodes [show|run|test|add|rm NAME]     the registry of nodes (Python tools)
    evolve doctor                                which LLM backend, and what is missing
    evolve chat   (or evolve alone on a terminal)  a conversation; /help lists its commands

    The options below are those of a request. A command takes the ones it uses before or
    after its arguments (evolve COMMAND --help lists them; one it does not use is warned of).
    """
    if ctx.invoked_subcommand is None:
        group = ctx.command
        chat = group.get_command(ctx, "chat") if isinstance(group, click.Group) else None
        if chat is not None and sys.stdin.isatty() and sys.stdout.isatty():
            ctx.invoke(chat)  # `evolve` alone on a terminal: the chat
            return
        from code_evolver.cli.piped import has_text

        if has_text():
            raise click.UsageError(
                "text was piped to evolve, but no request says what to do with it: "
                'cat notes.txt | evolve "summarize this"',
                ctx,
            )
        click.echo(ctx.get_help())


def cli(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code instead of exiting (tests call this)."""
    try:
        # Without standalone mode, click returns the code of ``ctx.exit(code)`` instead of exiting.
        code = main_group.main(
            args=list(argv) if argv is not None else None, prog_name="evolve", standalone_mode=False
        )
    except click.ClickException as exc:
        exc.show()
        if "--json" in (argv if argv is not None else sys.argv[1:]):  # stdout is one document
            from code_evolver.cli import terminal

            message = exc.format_message()
            terminal.emit_error_json(message, [message])
        return exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    return code if isinstance(code, int) else EXIT_OK


def main() -> None:
    """Console-script entry point: the only place that exits the process.

    Everything is printed by now. A thread still busy at this point is work that was given up
    (a model reading a prompt when Ctrl-C came: llama.cpp cannot stop mid-prompt); waiting for
    it would hold the exit for seconds, so the process leaves without waiting.
    """
    code = cli()
    if any(
        t.is_alive() and not t.daemon
        for t in threading.enumerate()
        if t is not threading.main_thread()
    ):
        from code_evolver.cli import terminal

        terminal.leave_now(code)
    raise SystemExit(code)
