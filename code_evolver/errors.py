"""The error tree of Code Evolver.

Low-level errors (pydantic, YAML, JSON, OS, subprocess, HTTP) are mapped into this tree once, where
they enter our code, with ``raise Specific(message) from exc``. Everything above that boundary
(the executor, the CLI, library users) deals only with these types::

    EvolverError                    base of everything we raise on purpose
    ├── UserError                   the user can fix it; CLI exit code 2
    │   ├── ConfigError             config.yaml is unreadable or invalid (names the key path)
    │   ├── PlanError               the plan is malformed, cyclic or refers to unknown things
    │   ├── ToolNotFound            a step or a call names a tool that is not configured
    │   └── PromptTooLong           a prompt and its reply do not fit in the model's context
    ├── BackendError                an LLM backend cannot serve; CLI exit code 3
    │   ├── BackendUnavailable      nothing answers where the backend should be
    │   └── ModelMissing            the backend answers but lacks the model
    ├── Interrupted                 Ctrl-C before any step ran; CLI exit code 130
    └── StepError                   one step's attempt went wrong; recorded, never raised to the CLI
        ├── ToolFailed              the tool ran and reported failure (exit code, exception)
        └── StepTimeout             the attempt ran past its timeout and was killed

A message is one line that names the problem and, where there is one, the fix.
"""

from __future__ import annotations

from collections.abc import Sequence


class EvolverError(Exception):
    """Base class of all errors Code Evolver raises on purpose."""

    exit_code = 1


class UserError(EvolverError):
    """Something the user can fix: bad config, bad plan, unknown tool.

    ``problems`` holds every problem found, so a user fixes them all in one go; ``str()`` gives
    the first and how many more there are.
    """

    exit_code = 2

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        if not self.problems:
            raise ValueError(f"{type(self).__name__} needs at least one problem")
        first, more = self.problems[0], len(self.problems) - 1
        super().__init__(first if more == 0 else f"{first} (and {more} more)")


def problems_of(exc: EvolverError) -> tuple[str, ...]:
    """Each problem of ``exc``, one line each: every one a UserError found, else its message."""
    return exc.problems if isinstance(exc, UserError) else (str(exc),)


class ConfigError(UserError):
    """config.yaml cannot be read or does not validate."""


class PlanError(UserError):
    """A plan is malformed or inconsistent."""


class MissingInput(PlanError):
    """The request works on text it does not give, and none was piped: a question for the user.

    ``question`` is the question alone, without the command line's advice on how to give the
    text (a chat answers it its own way); None when there is no such question.
    """

    def __init__(self, problems: str | Sequence[str], *, question: str | None = None) -> None:
        super().__init__(problems)
        self.question = question


class ToolNotFound(UserError):
    """A tool name that the registry does not know."""


class PromptTooLong(UserError):
    """A prompt plus the tokens reserved for its reply exceed what one request of the model holds.

    ``tokens`` is the prompt's size and ``limit`` the context of one request, both in tokens
    (None where the backend did not say).
    """

    def __init__(
        self, problem: str, *, tokens: int | None = None, limit: int | None = None
    ) -> None:
        super().__init__(problem)
        self.tokens = tokens
        self.limit = limit


class BackendError(EvolverError):
    """An LLM backend cannot serve requests."""

    exit_code = 3


class BackendUnavailable(BackendError):
    """Nothing answers at the backend's address."""


class ModelMissing(BackendError):
    """The backend answers but does not have the requested model."""


class Interrupted(EvolverError):
    """Ctrl-C before any step ran (e.g. while the model was still planning)."""

    exit_code = 130


class StepError(EvolverError):
    """One attempt of one step went wrong; the executor records it and applies the policy.

    ``retryable`` says whether another attempt could succeed; a missing program or a bad
    reference cannot, so the executor does not wait for backoff to find that out again.
    """

    retryable = True

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class ToolFailed(StepError):
    """The tool ran and failed: non-zero exit status, an exception, unusable output."""


class StepTimeout(StepError):
    """The attempt ran past its timeout; its process group has been killed."""


class RenderError(StepError):
    """A step's input cannot be rendered, e.g. ``{step1.title}`` where step1 has no ``title``.

    Retrying cannot help: the outputs it reads are final.
    """

    retryable = False
