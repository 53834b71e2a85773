"""The tool calls waiting to start, and the choice of which one starts next.

Split from ``code_evolver.calls`` because this choice is the whole cost of a wide fan-out: a
node script sending 8,000 calls at once must not pay for every waiting call each time one ends
(one list rescanned on every wake made scheduling quadratic). Here starting a call costs
O(tools with waiting calls), never O(calls waiting).

The rule it implements: repeatedly start the *oldest* waiting call that can start now. A call
can start when its caller lends its slot (``CallChannel.lent_slot_free``; a call to the
caller's own tool then skips that tool's gate too) or when its tool's gate and a global slot
are free. Starting only uses capacity up, so this equals one pass over the calls oldest first.

Every waiting call has two entries: in its tool's FIFO and in its caller's FIFO for that tool.
The oldest call that a global slot can start is the oldest head among the tools whose gate is
free; the oldest one a lent slot can start is found among the *lenders* (callers whose slot is
free and who have calls waiting), each at a cost of the tools it waits on. A re-queued call
(a retry) counts as new. Entries of calls that left the queue otherwise (cancelled, started
through the other FIFO) are stale: skipped when they reach a head, and dropped all at once
when they outnumber the live ones, so memory stays proportional to the calls waiting.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

from code_evolver.capacity import Capacity

if TYPE_CHECKING:
    from code_evolver.calls import CallChannel, ChildCall

Entry = tuple[int, "ChildCall"]
"""A call's place in a FIFO: live while ``call.queued_as`` is still this number."""

_SLACK = 64
"""Stale entries tolerated beyond the live ones before they are all dropped."""


class CallQueue:
    def __init__(self, capacity: Capacity) -> None:
        self._capacity = capacity
        self._numbers = itertools.count(1)
        self._by_tool: dict[str, deque[Entry]] = {}
        self._by_caller: dict[CallChannel, dict[str, deque[Entry]]] = {}
        self._lenders: set[CallChannel] = set()
        """Callers whose lent slot was free when they had calls waiting (checked on use)."""
        self._live = 0
        self.entries = 0
        """Entries held, stale ones included: at most twice the live ones plus a constant."""
        self.steps = 0
        """Queue heads looked at and stale entries skipped: the work done, for tests."""

    def __len__(self) -> int:
        return self._live

    def calls(self) -> list[ChildCall]:
        """The waiting calls, oldest first (for inspection: O(n log n))."""
        live = [entry for queue in self._by_tool.values() for entry in queue if _live(entry)]
        return [call for _, call in sorted(live, key=lambda entry: entry[0])]

    def push(self, call: ChildCall) -> None:
        """Queue ``call`` behind every call waiting now."""
        number = next(self._numbers)
        call.queued_as = number
        entry = (number, call)
        self._by_tool.setdefault(call.tool_name, deque()).append(entry)
        by_tool = self._by_caller.setdefault(call.caller, {})
        by_tool.setdefault(call.tool_name, deque()).append(entry)
        self._live += 1
        self.entries += 2
        if call.caller.lent_slot_free:
            self._lenders.add(call.caller)

    def discard(self, call: ChildCall) -> None:
        """``call`` no longer waits (cancelled); a no-op when it is not queued."""
        if call.queued_as:
            call.queued_as = 0
            self._live -= 1
            if self.entries > 2 * self._live + _SLACK:
                self._compact()

    def lent_slot_freed(self, caller: CallChannel) -> None:
        if caller in self._by_caller:
            self._lenders.add(caller)

    def startable(self) -> Iterator[ChildCall]:
        """The calls that can start now, oldest first, each taken off the queue.

        The consumer must start each call (taking its capacity) before asking for the next.
        """
        capacity = self._capacity
        lenders: list[tuple[int, str, CallChannel]] = []
        for caller in list(self._lenders):
            self._add_lender(lenders, caller)
        while True:
            best: deque[Entry] | None = None
            if capacity.slot_free():
                for name, queue in list(self._by_tool.items()):
                    if (head := self._head(queue)) is None:
                        del self._by_tool[name]
                    elif capacity.gates[name].free() and (best is None or head < best[0][0]):
                        best = queue
            while lenders and not self._lender_valid(*lenders[0]):
                _, _, caller = heapq.heappop(lenders)
                self._add_lender(lenders, caller)
            if lenders and (best is None or lenders[0][0] < best[0][0]):
                _, name, caller = heapq.heappop(lenders)
                call = self._take(self._by_caller[caller][name])
            elif best is not None:
                call = self._take(best)
                self._head(self._by_caller[call.caller][call.tool_name])  # drops its twin entry
            else:
                return
            yield call

    def _add_lender(self, lenders: list[tuple[int, str, CallChannel]], caller: CallChannel) -> None:
        """Push the oldest call the caller's lent slot can start now, if any."""
        queues = self._by_caller.get(caller)
        if not queues or not caller.lent_slot_free:
            self._lenders.discard(caller)
            return
        best: tuple[int, str] | None = None
        for name, queue in list(queues.items()):
            if (head := self._head(queue)) is None:
                del queues[name]
            elif (name == caller.tool or self._capacity.gates[name].free()) and (
                best is None or head < best[0]
            ):
                best = (head, name)
        if not queues:
            del self._by_caller[caller]
            self._lenders.discard(caller)
        elif best is not None:
            heapq.heappush(lenders, (*best, caller))

    def _lender_valid(self, number: int, name: str, caller: CallChannel) -> bool:
        """Still the oldest call this caller's lent slot can start? Starting calls only uses
        capacity up, so a caller's oldest startable call can only get younger."""
        queue = self._by_caller.get(caller, {}).get(name)
        return (
            caller.lent_slot_free
            and queue is not None
            and self._head(queue) == number
            and (name == caller.tool or self._capacity.gates[name].free())
        )

    def _head(self, queue: deque[Entry]) -> int | None:
        """The number of the oldest live entry, after dropping the stale ones before it."""
        self.steps += 1
        while queue:
            if _live(queue[0]):
                return queue[0][0]
            queue.popleft()
            self.entries -= 1
            self.steps += 1
        return None

    def _take(self, queue: deque[Entry]) -> ChildCall:
        _, call = queue.popleft()
        self.entries -= 1
        call.queued_as = 0
        self._live -= 1
        return call

    def _compact(self) -> None:
        """Drop every stale entry: O(entries), paid for by the stale ones since the last time."""
        self.entries = 0
        for name, queue in list(self._by_tool.items()):
            self._by_tool[name] = kept = deque(entry for entry in queue if _live(entry))
            self.entries += len(kept)
            if not kept:
                del self._by_tool[name]
        for caller, queues in list(self._by_caller.items()):
            for name, queue in list(queues.items()):
                queues[name] = kept = deque(entry for entry in queue if _live(entry))
                self.entries += len(kept)
                if not kept:
                    del queues[name]
            if not queues:
                del self._by_caller[caller]
                self._lenders.discard(caller)


def _live(entry: Entry) -> bool:
    return entry[1].queued_as == entry[0]
