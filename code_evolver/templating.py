"""``{name}`` / ``{name.key}`` placeholders, and ``{{name}}`` for a literal ``{name}``.

One small syntax serves two places: step inputs, where names are step ids (``{step1}``,
``{step1.title}``), and tool templates, where names are ``input`` and ``params.NAME``. Only braces
around an identifier path are special; every other brace (``{"a": {"b": 1}}``, ``{ x }``,
``{{ .Go }}``) is literal text, so JSON and code pass through untouched. Doubling the braces of
a placeholder, ``{{step1}}``, writes it literally as ``{step1}``.

Templates are parsed once (when a plan is organized or a tool is configured) and rendered many
times, so rendering is a join over pre-split segments.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

_PATH = r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*"
_PLACEHOLDER = re.compile(rf"\{{{_PATH}\}}")
_TOKEN = re.compile(rf"\{{\{{(?P<escaped>{_PATH})\}}\}}|\{{(?P<ref>{_PATH})\}}")


@dataclass(frozen=True, slots=True)
class Ref:
    """A placeholder: ``name`` and the key path after it (``{step1.a.b}`` -> step1, (a, b))."""

    name: str
    path: tuple[str, ...] = ()

    def __str__(self) -> str:
        return "{" + ".".join((self.name, *self.path)) + "}"


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal strings interleaved with references."""

    source: str
    segments: tuple[str | Ref, ...]

    @property
    def refs(self) -> tuple[Ref, ...]:
        return tuple(s for s in self.segments if isinstance(s, Ref))

    @property
    def is_literal(self) -> bool:
        return all(isinstance(s, str) for s in self.segments)

    def render(self, resolve: Callable[[Ref], str]) -> str:
        if len(self.segments) == 1 and isinstance(self.segments[0], str):
            return self.segments[0]
        return "".join(s if isinstance(s, str) else resolve(s) for s in self.segments)


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> Template:
    """Split ``text`` into literal and reference segments, resolving ``{{name}}`` escapes.

    Cached: the same params and prompts are rendered for every attempt of every step.
    """
    segments: list[str | Ref] = []
    literal: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        literal.append(text[pos : match.start()])
        pos = match.end()
        if escaped := match.group("escaped"):
            literal.append("{" + escaped + "}")
        else:
            if literal_text := "".join(literal):
                segments.append(literal_text)
            literal.clear()
            name, *path = match.group("ref").split(".")
            segments.append(Ref(name, tuple(path)))
    literal.append(text[pos:])
    if literal_text := "".join(literal):
        segments.append(literal_text)
    return Template(text, tuple(segments) or ("",))


def escape(text: str) -> str:
    """``text`` as a template that renders to exactly ``text`` (placeholders doubled)."""
    return _PLACEHOLDER.sub(lambda m: "{" + m.group(0) + "}", text)


def iter_strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON-like value (params may nest lists and objects)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from iter_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from iter_strings(item)


def render_value(value: Any, resolve: Callable[[Ref], str]) -> Any:
    """Render every string inside a JSON-like value, keeping its shape."""
    if isinstance(value, str):
        return parse(value).render(resolve)
    if isinstance(value, Mapping):
        return {k: render_value(v, resolve) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(v, resolve) for v in value]
    return value


def to_text(value: Any) -> str:
    """How a value is written into a template: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


class MissingKey(LookupError):
    """``lookup_path`` could not follow the key path; the message says where it stopped."""


def lookup_path(value: Any, path: tuple[str, ...]) -> Any:
    """Follow ``path`` into ``value``; a string that holds a JSON object or array is parsed first.

    List items are addressed by index (``{step1.items.0}``).
    """
    current = value
    for depth, key in enumerate(path):
        if isinstance(current, str):
            try:
                current = json.loads(current)
            except ValueError:
                where = ".".join(path[:depth]) or "the output"
                raise MissingKey(f"{where} is text, not a JSON object with key {key!r}") from None
        if isinstance(current, Mapping):
            if key not in current:
                keys = ", ".join(sorted(map(str, current))) or "none"
                raise MissingKey(f"no key {key!r} (keys: {keys})")
            current = current[key]
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            raise MissingKey(f"cannot read {key!r} from a {type(current).__name__}")
    return current
