"""The tool catalogue as ``evolve tools`` shows it: one row of plain data per tool, and a
cache of those rows.

Making the catalogue means validating the config, which imports pydantic and builds every
settings model: about 300 ms, where reading the files takes one. Yet the catalogue changes
only when something it is made of changes, so the rows are kept in
``$EVOLVE_HOME/cache/tools.json`` under a key that covers all of it: the bytes of every config
layer (and which files they are), the command-line options, the environment variables the
config names, and evolve's own code (each source file's size and time). What the config points
at is checked apart from the key, as the entry records what it read: the files tools name
(prompts, scripts, working folders) and the stored nodes, which are tools too.

A cache that cannot be read is a miss; one that cannot be written warns once (as all state
does) and the command goes on. Only a catalogue that was made without an error is kept, so a
broken config is reported every time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from code_evolver.config_layers import layer_files
from code_evolver.home import HOME_ENV, evolve_home, state_dir, state_problem

if TYPE_CHECKING:
    from code_evolver.config import Config
    from code_evolver.launch.launcher import Launcher
    from code_evolver.tools.base import Tool

WHAT = "tool catalogue cache"
FILE_NAME = "tools.json"
FORMAT = 2
"""Bumped when a row's fields change: entries of another format are misses."""

Row = dict[str, Any]
_CODE = Path(__file__).resolve().parent
_ENV_NAME = re.compile(rb"\b[A-Z][A-Z0-9_]{2,}\b")
_ALWAYS_READ = ("OLLAMA_HOST", HOME_ENV, "CODE_EVOLVER_CONFIG")
"""Environment the config reads whatever its files say."""


def rows(tools: Mapping[str, Tool], launcher: Launcher | None = None) -> dict[str, Row]:
    """Each tool as ``evolve tools --json`` prints it; ``sandbox`` is how a tool that runs
    processes runs them under ``launcher``'s settings (None for the others)."""
    from code_evolver.tools.process import ProcessTool

    return {
        name: {
            "kind": tool.kind,
            "description": tool.description,
            "max_concurrency": tool.max_concurrency,
            "timeout_s": tool.timeout_s,
            "required_params": sorted(tool.required_params),
            "default_params": dict(tool.default_params),
            "sandbox": tool.isolation(launcher) if isinstance(tool, ProcessTool) else None,
        }
        for name, tool in sorted(tools.items())
    }


@dataclass(frozen=True)
class Listing:
    """The rows, the config files they came from, and what else they were made of (each file
    a tool names, and each stored node: as :func:`seen` saw them before the rows were made)."""

    tools: dict[str, Row]
    sources: list[str]
    files: list[str]
    read: list[str]


def named_files(config: Config) -> list[Path]:
    """The files and folders the tools of ``config`` name: a prompt, a script, a ``cwd``."""
    return [
        config.tool_dir(name) / value
        for name, spec in config.tools.items()
        for field in ("prompt", "script", "cwd")
        if isinstance(value := getattr(spec, field, None), str)
    ]


def seen(files: Iterable[Path]) -> list[str]:
    """``files`` as they are now (size and time, or missing), then the stored nodes."""
    return [_stat(path) for path in files] + nodes_seen()


def key(config_path: str | os.PathLike[str] | None, options: str) -> str:
    """What the catalogue depends on, apart from stored nodes, as one digest. Raises
    ConfigError for a named config file that does not exist, OSError for one that cannot
    be read: the caller then makes the catalogue the slow way, which reports it."""
    digest = hashlib.sha256(f"{FORMAT}\0{options}\0".encode())
    names: set[bytes] = set()
    for path, role in layer_files(config_path):
        data = path.read_bytes()
        digest.update(f"{path}\0{role}\0{len(data)}\0".encode())
        digest.update(data)
        names.update(_ENV_NAME.findall(data))
    for name in sorted({n.decode() for n in names} | set(_ALWAYS_READ)):
        digest.update(f"{name}={os.environ.get(name)!r}\0".encode())
    for entry in _sources(_CODE):
        digest.update(entry.encode())
    return digest.hexdigest()


def cached(of: str) -> Listing | None:
    """The catalogue stored under key ``of``, if its stored nodes are still the same."""
    try:
        path = evolve_home() / "cache" / FILE_NAME
        entry = json.loads(path.read_text(encoding="utf-8"))
        files, read = list(entry["files"]), list(entry["read"])
        if entry["key"] != of or seen(Path(f) for f in files) != read:
            return None
        return Listing(dict(entry["tools"]), list(entry["sources"]), files, read)
    except (OSError, RuntimeError, ValueError, KeyError, TypeError):
        return None


def save(of: str, listing: Listing) -> None:
    """Keep ``listing`` under key ``of`` (one entry: the last catalogue made)."""
    folder = state_dir("cache", what=WHAT)
    if folder is None:
        return
    entry = {
        "key": of,
        "files": listing.files,
        "read": listing.read,
        "tools": listing.tools,
        "sources": listing.sources,
    }
    target = folder / FILE_NAME
    partial = target.with_name(f".{FILE_NAME}.{os.getpid()}")
    try:
        partial.write_text(json.dumps(entry), encoding="utf-8")
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        state_problem(WHAT, target, exc)


def nodes_seen() -> list[str]:
    """Every stored node's description file, with its size and time: a node added, written
    again, removed or edited changes this."""
    try:
        root = evolve_home() / "nodes"
    except RuntimeError:
        return []
    return sorted(_sources(root, suffix="meta.json"))


def _stat(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:
        return f"{path} missing -"
    return f"{path} {stat.st_size} {stat.st_mtime_ns}"


def _sources(folder: Path, suffix: str = ".py") -> Iterator[str]:
    """``path size mtime`` of every file under ``folder`` whose name ends with ``suffix``."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if entry.name != "__pycache__":
                    yield from _sources(Path(entry.path), suffix)
            elif entry.name.endswith(suffix):
                stat = entry.stat()
                yield f"{entry.path} {stat.st_size} {stat.st_mtime_ns}"
        except OSError:
            continue
