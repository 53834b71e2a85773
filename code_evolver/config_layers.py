"""The files a config is made of, and how they are stacked (see :mod:`code_evolver.config`).

Pure data work, before any validation: find the layers, read each one's YAML, merge them in
order and remember, for every value, the file that set it (its *origin*). Origins are kept per
leaf, by dotted key path (``llm.ollama.model``, ``tools.shout.command``); a mapping that a layer
sets as a whole, such as a tool's spec, has one origin per leaf, all the same file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from code_evolver.bounded import TooLarge, load_yaml
from code_evolver.errors import ConfigError
from code_evolver.home import HOME_ENV, evolve_home, warn_once
from code_evolver.resources import default_config_path

CONFIG_ENV = "CODE_EVOLVER_CONFIG"
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
CONFIG_NAME = "config.yaml"

PACKAGED = "packaged defaults"
HOME_LAYER = f"${HOME_ENV}/{CONFIG_NAME}"


@dataclass(frozen=True)
class Layer:
    """One document of the stack: its file (None for text given in code), why it is in the
    stack (``packaged defaults``, ``$EVOLVE_HOME/config.yaml``, ``--config``, ...) and what it
    says."""

    path: Path | None
    role: str
    data: dict[str, Any]


@dataclass
class LayeredConfig:
    """The layers, lowest first, their merged settings (not validated yet) and the origins."""

    layers: tuple[Layer, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, Path] = field(default_factory=dict)
    """Dotted key path of every leaf value -> the file that set it (last set, last in order)."""
    problems: list[str] = field(default_factory=list)
    """Problems found while reading, each prefixed with its file (bad tool names)."""

    def add(self, layer: Layer) -> None:
        """Stack ``layer`` on top: it overrides only what it sets."""
        self.layers += (layer,)
        self.problems += [f"{_label(layer.path)}: {p}" for p in _bad_tool_names(layer.data)]
        _overlay(self.data, layer.data, (), self.origins, layer.path)


def origin_of(origins: Mapping[str, Path], key: str) -> Path | None:
    """The file that set ``key`` (a dotted path). For a mapping, the file that set the last of
    its values; for a key inside a value (a setting a spec lacks), the file of that value."""
    parts = key.split(".")
    for count in range(len(parts), 0, -1):
        prefix = ".".join(parts[:count])
        if prefix in origins:
            return origins[prefix]
        below = [path for name, path in origins.items() if name.startswith(prefix + ".")]
        if below:
            return below[-1]  # origins are kept in the order they were set
    return None


def home_config_path() -> Path | None:
    """``$EVOLVE_HOME/config.yaml``, whether it exists or not; None when no home can be told."""
    try:
        return evolve_home() / CONFIG_NAME
    except RuntimeError:
        return None


def project_config(path: str | os.PathLike[str] | None = None) -> tuple[Path, str] | None:
    """The project's config file and where it was named: ``--config``, ``$CODE_EVOLVER_CONFIG``
    or ``./config.yaml``; None when there is none. A named file that does not exist is an error."""
    if path is not None:
        return _existing(Path(path), "--config"), "--config"
    if env := os.environ.get(CONFIG_ENV):
        return _existing(Path(env), f"${CONFIG_ENV}"), f"${CONFIG_ENV}"
    local = Path(CONFIG_NAME)
    if local.is_file():
        return local.resolve(), f"./{CONFIG_NAME}"
    return None


def layer_files(path: str | os.PathLike[str] | None = None) -> list[tuple[Path, str]]:
    """The files of the stack that exist, lowest first, each with its role. A file that is
    already in the stack (``--config`` naming the packaged one) is not stacked twice."""
    files = [(default_config_path().resolve(), PACKAGED)]
    home = home_config_path()
    if home is not None and home.is_file():
        files.append((home.resolve(), HOME_LAYER))
    if (project := project_config(path)) is not None:
        files.append(project)
    unique: list[tuple[Path, str]] = []
    for file, role in files:
        if all(file != seen for seen, _ in unique):
            unique.append((file, role))
    return unique


def read_layers(path: str | os.PathLike[str] | None = None) -> LayeredConfig:
    """Read and stack every layer; unreadable files and bad YAML raise ConfigError at once."""
    stack = LayeredConfig()
    for file, role in layer_files(path):
        stack.add(Layer(file, role, parse_document(read_text(file), file)))
    return stack


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None


def parse_document(text: str, path: Path | None) -> dict[str, Any]:
    """One config file's YAML as a mapping; ConfigError with file, line and column if not."""
    source = _label(path)
    try:
        data = load_yaml(text)
    except RecursionError:
        raise ConfigError(f"{source}: the YAML is nested too deeply") from None
    except TooLarge as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of settings")
    if isinstance(data.get("planner"), str):  # the shorthand, so that layers merge into it
        data["planner"] = {"mode": data["planner"]}
    return data


def _overlay(
    into: dict[Any, Any],
    over: Mapping[Any, Any],
    where: tuple[str, ...],
    origins: dict[str, Path],
    path: Path | None,
) -> None:
    for key, value in over.items():
        at = (*where, str(key))
        current = into.get(key)
        if at == ("tools",) and isinstance(value, dict):
            if not isinstance(current, dict):
                _forget(origins, at)
                current = into[key] = {}
            for name, spec in value.items():
                _forget(origins, (*at, str(name)))
                if spec is None:
                    if current.pop(name, None) is None:
                        _removes_nothing(str(name), current, path)
                else:
                    current[name] = _copy(spec)
                    _remember(origins, (*at, str(name)), spec, path)
        elif isinstance(value, dict) and isinstance(current, dict):
            _overlay(current, value, at, origins, path)
        else:
            _forget(origins, at)
            into[key] = _copy(value)
            _remember(origins, at, value, path)


def _removes_nothing(name: str, tools: Mapping[str, Any], path: Path | None) -> None:
    """``tools: {NAME: null}`` where no layer below defines NAME: most likely a typo, so
    say it (a warning: a layer may remove a tool that only some projects define)."""
    from code_evolver.suggest import did_you_mean

    warn_once(
        f"removes-nothing:{path}:{name}",
        f"{_label(path)}: tools.{name}: null removes nothing, as no layer below defines "
        f"{name!r}{did_you_mean(name, tools)}",
    )


def _remember(origins: dict[str, Path], at: tuple[str, ...], value: Any, path: Path | None) -> None:
    if path is None:
        return
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _remember(origins, (*at, str(key)), item, path)
    else:
        origins[".".join(at)] = path


def _forget(origins: dict[str, Path], at: tuple[str, ...]) -> None:
    key = ".".join(at)
    for name in [n for n in origins if n == key or n.startswith(key + ".")]:
        del origins[name]


def _copy(value: Any) -> Any:
    """A copy sharing nothing: YAML aliases share objects, and later layers merge into them."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _bad_tool_names(data: Mapping[str, Any]) -> Iterable[str]:
    tools = data.get("tools")
    if not isinstance(tools, dict):
        return
    for name in tools:
        if not isinstance(name, str) or not re.match(TOOL_NAME_PATTERN, name):
            yield f"tools.{name}: tool names may use only ASCII letters, digits, '_' and '-'"


def _existing(path: Path, origin: str) -> Path:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (from {origin})")
    return path.resolve()


def _label(path: Path | None) -> str:
    return str(path) if path else "config"
