"""Typed events a request emits while it is planned and run.

The live view, the run history and tests subscribe to an :class:`EventBus` instead of
threading callbacks through the executor. Every event of a request carries its ``run_id``
(a session's events in between, like a model loading, have none). ``at`` is seconds since
the run started (monotonic clock). Listeners run inline on the event loop, so they must be
quick and must not block.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def _event(cls: type[_T]) -> type[_T]:
    """An event class: a slotted dataclass that type checkers hold frozen.

    Frozen at run time too, each field would be set through ``object.__setattr__``: that
    makes an event three times as dear to build (1.6 against 0.5 us for ten fields), paid
    twice for every step of every run someone watches.
    """
    return dataclass(slots=True)(cls)


@_event
class Planning:
    """The model is still planning: how long, how many tokens, how many steps so far."""

    stage: str
    elapsed_s: float
    tokens: int
    steps: int
    run_id: str = ""


@_event
class PlanStarted:
    """A request is being planned; its run (if it gets to run) will have ``run_id``."""

    run_id: str
    request: str


@_event
class PlanFinished:
    """The plan is made: by whom (``source``: rules, cache, llm, clauses, fallback), in how
    long, with how many model calls, and what was said about it (a repair, a fallback)."""

    run_id: str
    source: str
    seconds: float
    calls: int
    warnings: tuple[str, ...] = ()


@_event
class ModelLoading:
    """The model is being loaded (or its server reached) before it can answer: seconds in
    which nothing else moves, so they are shown. ``done`` with the time it took."""

    model: str
    done: bool = False
    seconds: float = 0.0


@_event
class StepInfo:
    """What a listener may want to know of a planned step."""

    step_id: str
    tool: str
    description: str
    depends_on: tuple[str, ...]
    wave: int
    """Its wave, counted from 1."""
    parallel_group: int | None = None


@_event
class RunStarted:
    run_id: str
    steps: tuple[StepInfo, ...]
    plan_json: str
    """The plan as JSON text (what the run history keeps; text costs a listener that ships
    it elsewhere nothing more)."""
    at: float = 0.0
    run_input: str | None = None
    """The text the run's ``{input}`` reads (piped in), if any."""


@_event
class PlanExtended:
    """Steps of a plan that is still being written were added to the run."""

    steps: tuple[StepInfo, ...]
    """The new steps."""
    plan_json: str
    """The whole plan now, as JSON text."""
    at: float
    run_id: str = ""

    @property
    def step_ids(self) -> tuple[str, ...]:
        return tuple(step.step_id for step in self.steps)


@_event
class StepStarted:
    step_id: str
    tool: str
    attempt: int
    at: float
    run_id: str = ""


@_event
class StepSucceeded:
    step_id: str
    attempt: int
    duration_s: float
    output: Any
    at: float
    input: str | None = None
    """The attempt's rendered input."""
    run_id: str = ""
    params: Mapping[str, Any] | None = None
    """The attempt's params, references filled in."""
    reused: bool = False
    """The output came from an earlier run (``--reuse``); the tool did not run."""
    began: float | None = None
    """When this attempt started (seconds since the run started), for a record of it."""


@_event
class StepOutput:
    """A piece of a final step's output as it is written (a model's answer, streamed)."""

    step_id: str
    attempt: int
    text: str
    at: float
    run_id: str = ""
    restart: bool = False
    """The text so far is void: the model's server failed mid-answer, and another one
    answers from the start (``text`` begins the new answer)."""


@_event
class StepRetrying:
    """An attempt failed and another one starts after ``delay_s``."""

    step_id: str
    attempt: int
    error: str
    delay_s: float
    at: float
    input: str | None = None
    """The failed attempt's rendered input."""
    run_id: str = ""
    began: float | None = None
    """When this attempt started (seconds since the run started), for a record of it."""


@_event
class StepFailed:
    """The step's last attempt failed; ``status`` is ``failed`` or ``timed_out``."""

    step_id: str
    attempt: int
    error: str
    status: str
    at: float
    input: str | None = None
    """The attempt's rendered input."""
    run_id: str = ""
    began: float | None = None
    """When this attempt started (seconds since the run started), for a record of it."""


@_event
class StepSkipped:
    """A dependency failed, so this step will not run."""

    step_id: str
    because_of: str
    at: float
    run_id: str = ""


@_event
class StepCancelled:
    """Fail-fast, Ctrl-C or a cancelled run stopped this step (running or not yet started)."""

    step_id: str
    was_running: bool
    at: float
    run_id: str = ""
    attempt: int = 0
    """The attempt it stopped (0: it had not started)."""
    began: float | None = None
    """When this attempt started (seconds since the run started), for a record of it."""


@_event
class CallStarted:
    """A running step's script called a tool (an attempt of that call began)."""

    step_id: str
    call_id: str
    tool: str
    attempt: int
    at: float
    parent_call: str | None = None
    """The call whose node made this one, for calls nested in calls."""
    run_id: str = ""
    stage: bool = False
    """A stage of the step's own tool (an LLM endpoint, a generate attempt), not a call its
    script made."""


@_event
class CallFinished:
    """A child call ended; ``status`` as for steps (retries are new CallStarted events)."""

    step_id: str
    call_id: str
    tool: str
    status: str
    duration_s: float
    error: str | None
    at: float
    parent_call: str | None = None
    """The call whose node made this one, for calls nested in calls."""
    run_id: str = ""
    stage: bool = False
    """A stage of the step's own tool (an LLM endpoint, a generate attempt), not a call its
    script made."""
    step_attempt: int = 1
    """The attempt of the step it ran under."""


@_event
class RunFinished:
    """The run's last event, also when it was cancelled: how it ended, and its figures (as in
    the summary line; the whole record is the RunResult the run returns)."""

    status: str
    run_s: float
    critical_path_s: float | None
    """None, as speedup, when fewer than two steps ran: the figure means nothing then."""
    speedup: float | None
    peak_concurrency: int
    at: float
    run_id: str = ""


Event = (
    PlanStarted
    | PlanFinished
    | Planning
    | ModelLoading
    | RunStarted
    | PlanExtended
    | StepStarted
    | StepSucceeded
    | StepOutput
    | StepRetrying
    | StepFailed
    | StepSkipped
    | StepCancelled
    | CallStarted
    | CallFinished
    | RunFinished
)
Listener = Callable[[Event], None]


class EventBus:
    """Delivers each event to every listener, in subscription order.

    A listener that raises does not disturb the run: the first such error is kept in
    ``listener_error`` and re-raised by the executor once the run is over.
    """

    def __init__(self, *listeners: Listener) -> None:
        self._listeners: tuple[Listener, ...] = listeners
        """Replaced, never changed in place: a listener may unsubscribe while an event is
        being delivered, and emit need not copy the listeners for every event."""
        self._watchers = len(listeners)
        self.listener_error: BaseException | None = None

    def subscribe(self, listener: Listener, *, watches_output: bool = True) -> Callable[[], None]:
        """Add a listener; returns a function that removes it again. ``watches_output=False``:
        it does not read a final step's text as it is written (StepOutput), so it is no
        reason to stream that step (the run history records outputs when steps end)."""
        self._listeners += (listener,)
        self._watchers += watches_output

        def unsubscribe() -> None:
            listeners = list(self._listeners)
            listeners.remove(listener)
            self._listeners = tuple(listeners)
            self._watchers -= watches_output

        return unsubscribe

    @property
    def watches_output(self) -> bool:
        """Whether a listener shows final steps' text as it is written."""
        return self._watchers > 0

    def emit(self, event: Event) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception as exc:
                if self.listener_error is None:
                    self.listener_error = exc

    def __bool__(self) -> bool:
        return bool(self._listeners)
