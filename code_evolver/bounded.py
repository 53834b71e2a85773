"""Reading untrusted data within bounds: JSON and YAML from plan files, config files, model
replies and tool outputs.

Python refuses to turn integers of more than 4,300 digits into text, and it does so with a
``ValueError`` from deep inside whatever touches the number later; a YAML alias bomb of a few
hundred bytes expands to billions of values. Both are stopped where the data enters, with a
message that says what is wrong: numbers may have at most :data:`MAX_DIGITS` digits, and a
YAML document at most :data:`MAX_YAML_VALUES` values once its aliases are expanded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import yaml

MAX_DIGITS = 64
MAX_YAML_VALUES = 100_000


class TooLarge(ValueError):
    """The data is well-formed but past a bound (too many digits, too many values)."""


def bounded_int(text: str) -> int:
    """``int(text)`` for JSON numbers; TooLarge past :data:`MAX_DIGITS` digits."""
    digits = len(text.lstrip("-+"))
    if digits > MAX_DIGITS:
        raise TooLarge(f"a number with {digits} digits (at most {MAX_DIGITS} are accepted)")
    return int(text)


def huge_ints(value: Any) -> Iterator[int]:
    """Integers past :data:`MAX_DIGITS` digits anywhere in a JSON-like value."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            if abs(item) >= 10**MAX_DIGITS:
                yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


JSON_DECODER = json.JSONDecoder(parse_int=bounded_int)
"""A decoder whose integers are bounded (``raw_decode`` for JSON inside other text)."""


_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser where PyYAML was built with it (five times faster), else the Python one."""


class BoundedYamlLoader(_SafeLoader):  # type: ignore[misc]
    """``yaml.SafeLoader`` with bounded integers and a bounded size after alias expansion."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = len(str(node.value).lstrip("-+").replace("_", ""))
        if digits > MAX_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"a number with {digits} digits (at most {MAX_DIGITS})", node.start_mark
            )
        value: int = super().construct_yaml_int(node)
        return value

    def get_single_node(self) -> yaml.Node | None:
        node: yaml.Node | None = super().get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_YAML_VALUES:
            raise TooLarge(
                f"the YAML expands to more than {MAX_YAML_VALUES:,} values (aliases of aliases?)"
            )
        return node


BoundedYamlLoader.add_constructor("tag:yaml.org,2002:int", BoundedYamlLoader.construct_yaml_int)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values ``node`` stands for with every alias expanded; shared nodes (aliases)
    are counted once per use but computed once, so this is linear in the document's text."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    size = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            size += _expanded_size(child, sizes)
            if size > MAX_YAML_VALUES:
                break
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            size += _expanded_size(key_node, sizes) + _expanded_size(value_node, sizes)
            if size > MAX_YAML_VALUES:
                break
    sizes[key] = size
    return size


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` within bounds; raises yaml.YAMLError, TooLarge or RecursionError."""
    try:
        data = yaml.load(text, Loader=BoundedYamlLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        if "nesting depth" in str(getattr(exc, "problem", "")):  # libyaml's own bound
            raise TooLarge("the YAML is nested too deeply") from None
        raise
    return data
