"""The step cache's key of a step execution: what makes two executions the same work.

Only the standard library: the history writer (its own process) computes the key of each
step it records, and the step cache computes it again to look one up.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

TYPE_CHECKING = False  # not typing's: see code_evolver/__init__.py
if TYPE_CHECKING:
    from typing import Any


_PARAMS = json.JSONEncoder(sort_keys=True, default=str)
"""``json.dumps`` with options builds an encoder per call: a third of a step's record."""


def params_json(params: Mapping[str, Any]) -> str:
    return _PARAMS.encode(params) if params else "{}"


def cache_key(digest: str, text: str, params: str) -> str:
    """``params`` as :func:`params_json` gives them."""
    material = f"{digest}\0{params}\0{text}".encode(errors="surrogatepass")
    return hashlib.blake2b(material, digest_size=16).hexdigest()
