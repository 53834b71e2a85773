"""``evolve chat`` (and ``evolve`` alone on a terminal): the conversation.

On a terminal it is the prompt-toolkit REPL; with stdin not a terminal it reads one request
(or ``/command``) per line, so that a chat can be scripted and tested.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from code_evolver.cli import options

if TYPE_CHECKING:
    from code_evolver.chat.session import ChatSession


@click.command("chat")
@options.these("config", *options.MODEL, *options.PLANNING)
def chat_command() -> None:
    """Chat: each message is planned and run; the next can build on its answer.

    \b
    A follow-up without text of its own works on the last answer ("now translate that to
    german"); {last} names it in any request. /help lists the commands (/plan, /run, /tools,
    /backend, /model, /config, /context, /clear, /save, /runs, /show, /resume, /quit).
    Ctrl-C stops the running request, Ctrl-D leaves. With stdin not a terminal, one request
    per line.
    """
    import sys

    from code_evolver.chat import instant_prompt

    on_terminal = sys.stdin.isatty() and sys.stdout.isatty()
    if on_terminal:
        instant_prompt.show()  # typing can start while the editor loads

    import asyncio

    from code_evolver.chat.repl import run_lines, run_terminal
    from code_evolver.cli import terminal

    opts = options.current()

    def make_chat() -> ChatSession:
        from code_evolver.chat.session import ChatSession

        config = opts.config().with_planner(cache=False if opts.no_cache else None)
        err, out = terminal.stderr_console(), terminal.stdout_console()
        return ChatSession(config, err, out, config_path=opts.config_path)

    async def main() -> None:
        chat = None
        try:
            if on_terminal:
                chat = await run_terminal(make_chat, shown_early=True)  # session made meanwhile
            else:
                chat = make_chat()
                await run_lines(chat, sys.stdin)
        finally:
            if chat is not None:
                await chat.close()

    asyncio.run(main())  # one loop, one session and one loaded model for the whole chat
