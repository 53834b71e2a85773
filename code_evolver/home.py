"""Where Code Evolver keeps its state: ``$EVOLVE_HOME``, by default ``~/.code_evolver``.

State (the plan cache, later the run history and the node registry) makes evolve faster and
more useful, but it is never needed: a home that is a file, read-only, full or out of inodes
must not fail a run. :func:`state_dir` hands out folders under it and, when one cannot be made,
warns once (through the ``code_evolver`` logger, which the CLI prints as ``warning:``) and
returns None, so the caller goes on without its state.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

HOME_ENV = "EVOLVE_HOME"

log = logging.getLogger("code_evolver")
_warned: set[str] = set()


def evolve_home() -> Path:
    """``$EVOLVE_HOME``, else ``~/.code_evolver``; raises RuntimeError when neither can be told
    (no ``HOME`` and no user entry)."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".code_evolver").expanduser()


def file_in_the_way(path: Path) -> Path | None:
    """The file that stands where ``path`` or a folder above it should be, if any: the
    state under it can be neither read nor kept."""
    return next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)


def warn_once(key: str, message: str) -> None:
    """Log ``message`` as a warning the first time ``key`` is seen in this process."""
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


def state_problem(what: str, path: Path | str, exc: BaseException) -> None:
    """Warn (once per ``what``) that a piece of state cannot be written, and what to do."""
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    warn_once(
        f"state:{what}",
        f"cannot write the {what} at {path} ({detail}); going on without it "
        f"(point ${HOME_ENV} at a writable folder to keep it)",
    )


def state_dir(*parts: str, what: str) -> Path | None:
    """``$EVOLVE_HOME/<parts...>``, created on demand; None (after one warning) if it cannot be."""
    try:
        path = evolve_home().joinpath(*parts)
    except RuntimeError as exc:  # no HOME to put it in
        state_problem(what, f"~/.code_evolver/{'/'.join(parts)}", exc)
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        state_problem(what, path, exc)
        return None
    return path
