"""``evolve config``: the settings every layer adds up to, and the file each one came from."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from code_evolver.cli import options

COMMENT_COLUMN_MAX = 56
"""Origin comments line up, except after lines longer than this."""


@click.command("config")
@options.these("config", *options.MODEL, "max_parallel", "json")
def config_command() -> None:
    """Show the config in use: every layer merged, each value with the file that set it.

    \b
    Layers, each overriding only the keys it sets:
      1. packaged defaults (the config.yaml that comes with Code Evolver)
      2. $EVOLVE_HOME/config.yaml (default ~/.code_evolver/config.yaml), if it exists
      3. the project's: --config PATH, else $CODE_EVOLVER_CONFIG, else ./config.yaml

    Mappings (llm, planner, execution) merge key by key. A tool defined again replaces that
    tool's whole spec; `tools: {NAME: null}` removes it. Settings no file sets keep their
    built-in defaults and are not shown. --backend, --model and --max-parallel show as set by
    the option.

    \b
    --json: {"config": {...}, "origins": {"llm.backend": FILE, ...},
             "layers": [{"layer": ..., "path": ...}]}
    """
    from code_evolver.cli import terminal
    from code_evolver.config_layers import read_layers
    from code_evolver.display.safe import terminal_safe

    opts = options.current()
    opts.config()  # the whole check: every problem names its file and key
    stack = read_layers(opts.config_path)
    data = stack.data
    origins: dict[str, str] = {key: str(path) for key, path in stack.origins.items()}
    for section, key, value, flag in (
        ("llm", "backend", opts.backend, "--backend"),
        ("llm", "model", opts.model, "--model"),
        ("execution", "max_parallel", opts.max_parallel, "--max-parallel"),
    ):
        if value is not None:
            data.setdefault(section, {})[key] = value
            origins[f"{section}.{key}"] = flag
    layers = [(layer.role, str(layer.path)) for layer in stack.layers]
    if opts.as_json:
        terminal.emit_json(
            {
                "config": data,
                "origins": origins,
                "layers": [{"layer": role, "path": path} for role, path in layers],
            }
        )
        return
    click.echo(terminal_safe(render(data, origins, _header(opts.config_path))))


def render(data: Mapping[str, Any], origins: Mapping[str, str], header: list[str]) -> str:
    """``data`` as YAML (each value on one line) with a ``# from FILE`` comment after every
    value, or after a mapping's key when all of it came from one file."""
    lines: list[tuple[str, str | None]] = [(line, None) for line in header]
    for key, value in data.items():
        _emit(lines, (str(key),), key, value, 0, origins, annotate=True)
    width = min(COMMENT_COLUMN_MAX, max((len(text) for text, origin in lines if origin), default=0))
    return "\n".join(
        f"{text.ljust(width)}  # from {_short(origin)}" if origin else text
        for text, origin in lines
    )


def _emit(
    lines: list[tuple[str, str | None]],
    at: tuple[str, ...],
    key: Any,
    value: Any,
    depth: int,
    origins: Mapping[str, str],
    *,
    annotate: bool,
) -> None:
    head = f"{'  ' * depth}{_flow(key)}:"
    if not isinstance(value, dict) or not value:
        text = _flow(value) if isinstance(value, dict | list) else _scalar(value, in_flow=False)
        lines.append((f"{head} {text}", origins.get(".".join(at)) if annotate else None))
        return
    dotted = ".".join(at)
    sources = {path for name, path in origins.items() if name.startswith(dotted + ".")}
    whole = next(iter(sources)) if annotate and len(sources) == 1 else None
    lines.append((head, whole))
    for name, item in value.items():
        _emit(
            lines,
            (*at, str(name)),
            name,
            item,
            depth + 1,
            origins,
            annotate=annotate and whole is None,
        )


def _flow(value: Any) -> str:
    """``value`` as one line of YAML (flow style; text with line breaks or control characters
    double-quoted with escapes)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flow(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(item) for item in value) + "]"
    return _scalar(value, in_flow=True)


def _scalar(value: Any, *, in_flow: bool) -> str:
    import yaml

    style = '"' if isinstance(value, str) and not value.isprintable() else None
    # Inside a list, text is quoted wherever flow style needs it (", ", "[").
    text = yaml.safe_dump(
        [value] if in_flow else value,
        default_flow_style=True,
        width=math.inf,
        allow_unicode=True,
        default_style=style,
    )
    text = text.removesuffix("\n...\n").strip()
    return text[1:-1] if in_flow else text


def _header(path: Path | None) -> list[str]:
    """Comment lines naming the layers, present or not, lowest first."""
    from code_evolver.config_layers import HOME_LAYER, PACKAGED, home_config_path, project_config
    from code_evolver.resources import default_config_path

    rows = [(PACKAGED, str(default_config_path().resolve()))]
    if (home := home_config_path()) is not None:
        rows.append((HOME_LAYER, _short(str(home)) + ("" if home.is_file() else " (none)")))
    project = project_config(path)
    rows.append(
        (project[1], _short(str(project[0])))
        if project
        else ("project", "none (--config, $CODE_EVOLVER_CONFIG or ./config.yaml)")
    )
    width = max(len(role) for role, _ in rows)
    return [
        "# Layers, each overriding what it sets (what none sets: built-in defaults):",
        *(f"#   {role.ljust(width)}  {where}" for role, where in rows),
    ]


def _short(path: str) -> str:
    """A path in the user's home as ``~/...``."""
    try:
        home = str(Path.home())
    except RuntimeError:
        return path
    return "~" + path[len(home) :] if home != "/" and path.startswith(home + "/") else path


def config_text(path: Path | None) -> str:
    """The merged config with each value's file, as ``evolve config`` prints it (the REPL's
    ``/config``)."""
    from code_evolver.config_layers import read_layers

    stack = read_layers(path)
    origins = {key: str(where) for key, where in stack.origins.items()}
    return render(stack.data, origins, _header(path))
