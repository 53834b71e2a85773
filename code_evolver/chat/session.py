"""One conversation: one session (one event loop, one loaded model), its context, its commands.

:class:`ChatSession` is what both front ends drive: the prompt-toolkit REPL on a terminal and
the line reader for scripts (``printf 'a\\nb\\n' | evolve chat``). Each plain message is a
request, shown as the one-shot command shows it; a message that refers back ("translate
that to german", "make it shorter", or ``{last}`` anywhere) works on the last answer; a
``/command`` is handled by :mod:`code_evolver.chat.commands`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from code_evolver.chat.conversation import Conversation
from code_evolver.cli.present import RequestPresenter
from code_evolver.config import Config
from code_evolver.errors import EvolverError, MissingInput
from code_evolver.llm.base import LLMBackend
from code_evolver.result import RunResult
from code_evolver.session import Answer, Session
from code_evolver.templating import to_text

T = TypeVar("T")
LAST = "{last}"
_REFERS_BACK = re.compile(
    r"\b(?:it|its|that|this|them|those|these|the\s+above|the\s+last\s+one|your\s+(?:answer|"
    r"reply|text|summary|translation|list))\b",
    re.I,
)


class ChatSession:
    def __init__(
        self,
        config: Config,
        err: Console,
        out: Console,
        *,
        config_path: Path | None = None,
        backend: LLMBackend | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.err, self.out = err, out
        self.conversation = Conversation()
        self.transcript: list[tuple[str, str]] = []
        """(what was said, what came back) for ``/save``."""
        self.last_result: RunResult | None = None
        self.switched: dict[str, str] = {}
        """Settings changed in this chat (``/backend``, ``/model``), for ``/config``."""
        self._backend = backend
        self.session = Session(config, backend=backend)
        self.present = RequestPresenter(self.session, err, out)

    # ------------------------------------------------------------------ messages

    async def handle(self, line: str) -> bool:
        """One message; False when the conversation should end (``/quit``)."""
        from code_evolver.chat.commands import run_command, say_error

        text = line.strip()
        if not text:
            return True
        if text.startswith("/"):
            return await run_command(self, text)
        try:
            await self.ask(text)
        except EvolverError as exc:  # a user mistake or a backend down: say so, go on
            say_error(self.err, exc)
            self.transcript.append((text, f"error: {exc}"))
        return True

    async def ask(self, text: str) -> Answer:
        """Plan and run ``text``; a follow-up without text of its own works on the last answer;
        ``do the same for X`` is the last request again, about X."""
        text = self.expanded(text)
        answer = await self.in_context(text, self._ask)
        reply = final_text(answer)
        if reply.strip():  # a request that failed or was stopped leaves the context as it was
            self.conversation.add(text, reply)
        self.transcript.append((text, reply))
        self.last_result = answer.result
        return answer

    def expanded(self, text: str) -> str:
        """``do the same for X``: the last request, about X; any other text as it is."""
        if (again := _SAME_FOR.match(text.strip())) and self.conversation.turns:
            return same_for(self.conversation.turns[-1].request, again["topic"], again["prep"])
        return text

    async def in_context(self, text: str, attempt: Callable[[str, str | None], Awaitable[T]]) -> T:
        """``attempt(request, given)`` with the conversation (see :meth:`with_context`); a
        request that needs text and has none ("translate to french") then gets the last
        answer."""
        request, given = self.with_context(text)
        try:
            return await attempt(request, given)
        except MissingInput as exc:
            if given is not None or (self.conversation.last is None and exc.question is None):
                raise
            if self.conversation.last is None:  # the shell's advice (pipe it in) fits no chat
                raise MissingInput(
                    f"{exc.question} Put it in quotes or after a colon (a follow-up such as "
                    "'translate it' works on the last answer, and there is none yet)",
                    question=exc.question,
                ) from None
            return await attempt(request, self.conversation.last)

    def with_context(self, text: str) -> tuple[str, str | None]:
        """The request to plan, and the text it works on: the last answer for ``{last}`` and
        for a request that refers back ("translate it"); None otherwise."""
        last = self.conversation.last
        if LAST in text:
            if last is None:
                raise MissingInput(f"{LAST} is the last answer, and there is none yet")
            return text.replace(LAST, "this"), last
        if last is not None and _REFERS_BACK.search(text):
            return text, last
        return text, None

    async def _ask(self, request: str, given: str | None) -> Answer:
        with self.present.running():
            answer = await self.session.ask(
                request,
                on_plan=self.present.on_plan,
                input_text=given,
                context=self.conversation.for_planner(),
            )
        self.present.answer(answer)
        return answer

    def interrupt(self) -> None:
        """Ctrl-C while a request runs: stop it (finished steps are kept); the chat goes on.
        A Ctrl-C between requests (during a command) is no request's, and is dropped."""
        if self.session.busy:
            self.session.interrupt()

    # ------------------------------------------------------------------ settings

    async def switch(self, *, backend: str | None = None, model: str | None = None) -> None:
        """``/backend``, ``/model``: a new session on the changed settings (the old one is
        closed with its model); the conversation is kept."""
        config = self.config.with_llm(backend=backend, model=model)
        await self.use(config)
        self.switched |= {k: v for k, v in (("backend", backend), ("model", model)) if v}

    async def use(self, config: Config) -> None:
        """A new session on ``config`` (the old one is closed with its model); the
        conversation is kept."""
        await self.session.close()
        self.config = config
        self.session = Session(config, backend=self._backend)
        self.present = replace(self.present, session=self.session)

    def toolbar(self) -> str:
        """The bottom line: the model, and the last run's figures."""
        parts = [self.session.llm.known_identity or f"{self.config.llm.backend} backend"]
        if (result := self.last_result) is not None:
            parts.append(f"last run {result.status.value} in {result.run_s:.1f}s")
            if result.speedup is not None:
                parts.append(f"speedup {result.speedup:.2f}x")
        parts.append("/help")
        return " · ".join(parts)

    async def close(self) -> None:
        await self.session.close()


_SAME_FOR = re.compile(
    r"^(?:now\s+)?(?:do|make|write)\s+(?:the\s+same|it\s+again|that\s+again|one\s+more)\s+"
    r"(?P<prep>for|about|with|on)\s+(?P<topic>.+?)[.!?]*$",
    re.I,
)
_TOPIC = re.compile(
    r"\b(?P<prep>for|about|on|of|in)\s+(?P<topic>[^,;.]+?)(?=\s*(?:[,;.]|$|\band\b))", re.I
)


def same_for(request: str, topic: str, prep: str = "about") -> str:
    """``do the same for Spain`` after ``write a haiku about France``: the request about Spain
    (its last topic replaced), or the request with the topic added when it names none."""
    found = list(_TOPIC.finditer(request))
    if not found:
        return f"{request} {prep} {topic}"
    last = found[-1]
    return f"{request[: last.start('topic')]}{topic}{request[last.end('topic') :]}"


def final_text(answer: Answer) -> str:
    """What a request answered: the outputs of its final steps (those nothing reads)."""
    organized = answer.result.organized
    finals = [s for s in organized.steps if not organized.graph.succ[s]]
    outputs = answer.result.outputs
    return "\n\n".join(to_text(outputs[s]) for s in finals if s in outputs)
