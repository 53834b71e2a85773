"""The environment a tool's process gets: an allow-list, plus what the tool asks for.

A child inherits nothing else from evolve: not the API keys in the user's shell, nor the one
evolve uses for its own LLM calls. ``env:`` in a tool's config names more variables, either
passed through from evolve's environment (``[NAME]`` or ``NAME: null``) or set to a value.
Under ``none`` isolation (tools the user trusts) the whole environment is passed, as before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

PASSED = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM")
"""Variables every child gets from evolve's environment, when set (and every ``LC_*``)."""
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def child_environment(
    tool_env: Mapping[str, str | None],
    *,
    home: str | None = None,
    tmpdir: str | None = None,
    inherit_all: bool = False,
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for one child.

    ``home`` / ``tmpdir`` replace ``HOME`` / ``TMPDIR`` (a strict sandbox's private folders);
    otherwise they come from ``source`` (evolve's environment). ``tool_env`` values of None
    pass the variable through from ``source``.
    """
    parent = os.environ if source is None else source
    if inherit_all:
        env = dict(parent)
    else:
        env = {k: v for k, v in parent.items() if k in PASSED or k.startswith("LC_")}
        env.setdefault("PATH", DEFAULT_PATH)
        for name in ("HOME", "TMPDIR"):
            if name in parent:
                env[name] = parent[name]
    if home is not None:
        env["HOME"] = home
    if tmpdir is not None:
        env["TMPDIR"] = tmpdir
    for name, value in tool_env.items():
        if value is not None:
            env[name] = value
        elif name in parent:
            env[name] = parent[name]
    return env
