"""Reuse by meaning: which stored node does what a step asks, if any.

The measure is the overlap of the content words of the two descriptions (Jaccard over
lower-cased words, plurals folded, filler words dropped): cheap, needs no model, and good
enough to tell "count the vowels in a text" from "reverse the words". A node must also have
kept its word: one whose runs fail more often than not (after a few) is passed over, and the
step writes a new version of it instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from code_evolver.evolve.node_store import StoredNode

MIN_RUNS_TO_JUDGE = 3
UNFIT = 0.5

FILLER = frozenset(
    {
        "a", "an", "the", "of", "in", "on", "to", "for", "from", "and", "or", "with", "its",
        "it", "this", "that", "each", "every", "all", "into", "by", "as", "is", "are", "be",
        "please", "given", "some", "any", "me", "my", "your", "which", "what", "how", "do",
        "does", "return", "returns"
    }
)  # fmt: skip
"""Words that say nothing of what a step does."""


def words(text: str) -> frozenset[str]:
    found = re.findall(r"[a-z0-9]+", text.lower())
    return frozenset(_singular(w) for w in found if w not in FILLER)


def _singular(word: str) -> str:
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def similarity(a: str, b: str) -> float:
    left, right = words(a), words(b)
    if not left or not right:
        return 0.0
    return len(left & right) / len(left | right)


def unfit(node: StoredNode) -> bool:
    return node.runs >= MIN_RUNS_TO_JUDGE and node.fitness < UNFIT


def best_match(
    nodes: Iterable[StoredNode], task: str, threshold: float
) -> tuple[StoredNode | None, StoredNode | None]:
    """(the node to run, or None; the unfit node that matched, to be written again, or None)."""
    scored = sorted(
        ((similarity(task, node.description), node) for node in nodes),
        key=lambda pair: (pair[0], pair[1].fitness),
        reverse=True,
    )
    for score, node in scored:
        if score < threshold:
            break
        if unfit(node):
            return None, node
        return node, None
    return None, None
