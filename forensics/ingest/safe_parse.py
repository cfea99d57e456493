"""Parse YAML, JSON and TOML from a run dir safely and within the caps of `forensics.ingest.limits`.

- YAML: a `SafeLoader` subclass (never `yaml.load`/`unsafe_load`) that counts, while composing,
  how deep the document nests and how many nodes it expands to once aliases are followed, and
  stops at `MAX_NESTING_DEPTH` / `MAX_YAML_NODES`. A billion-laughs file is refused after reading a
  few hundred bytes of it, not after building a billion nodes. Aliases to a node that contains
  them (self-referencing documents) are refused too: every later walk would be infinite.
  Python tags (`!!python/object/apply:os.system`) are read by `InertYamlLoader` as the string
  `<tag>`; nothing is imported or called, and the tags that would run code are listed.
- JSON: the stdlib parser, with its RecursionError on absurd nesting turned into a `ParseLimit`,
  and the parsed value checked against `MAX_NESTING_DEPTH` without recursion.
- TOML: `tomllib`, guarded the same way.
"""

from __future__ import annotations

import json
import tomllib

import yaml
from yaml.events import AliasEvent

from forensics.ingest.limits import MAX_NESTING_DEPTH, MAX_YAML_NODES

# Tags whose constructors, under an unsafe loader, import modules or call functions.
CODE_RUNNING_TAGS = ("python/object/apply", "python/object/new", "python/name", "python/module", "python/object:")


class ParseLimit(ValueError):
    """A document over a cap (too deep, too many nodes after aliases); `code` names which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _too_deep(limit: int) -> ParseLimit:
    return ParseLimit("nesting_too_deep", f"nested more than {limit:,} levels deep, the limit "
                                          f"({MAX_NESTING_DEPTH.hint()})")


class BoundedYamlLoader(yaml.SafeLoader):
    """SafeLoader that stops at `MAX_NESTING_DEPTH` levels and `MAX_YAML_NODES` expanded nodes."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0
        self._expanded = 0
        self._sizes: dict[int, int] = {}  # id(node) -> nodes it expands to; set once the node is composed
        self._depth_limit = MAX_NESTING_DEPTH.value()
        self._node_limit = MAX_YAML_NODES.value()
        self.python_tags: list[str] = []

    def compose_node(self, parent, index):
        self._depth += 1
        if self._depth > self._depth_limit:
            raise _too_deep(self._depth_limit)
        if self.check_event(AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:  # its anchor is open: the alias sits inside the node it names
                raise ParseLimit("yaml_recursive_alias", "a YAML alias refers to a node that contains it "
                                                         "(a self-referencing document); not read")
            self._expanded += self._sizes[id(node)]
        else:
            before = self._expanded
            node = super().compose_node(parent, index)
            self._expanded += 1
            self._sizes[id(node)] = self._expanded - before
        self._depth -= 1
        if self._expanded > self._node_limit:
            raise ParseLimit("yaml_alias_bomb", f"expands to more than {self._node_limit:,} nodes once its aliases are "
                                                f"followed (an alias bomb or a huge document); not read "
                                                f"({MAX_YAML_NODES.hint()})")
        return node


class InertYamlLoader(BoundedYamlLoader):
    """BoundedYamlLoader that reads unknown (Python) tags as the inert string `<tag>`."""


def _inert(loader: InertYamlLoader, suffix: str, node) -> str:
    if any(marker in node.tag for marker in CODE_RUNNING_TAGS):
        loader.python_tags.append(node.tag)
    return f"<{node.tag}>"


InertYamlLoader.add_multi_constructor("", _inert)


def load_yaml(text: str) -> tuple[object, list[str]]:
    """(document, code-running tags met). Plain YAML first; Python-tagged YAML read inertly.

    Raises yaml.YAMLError for bad YAML and ParseLimit over a cap.
    """
    try:
        return _load(BoundedYamlLoader, text)
    except yaml.constructor.ConstructorError:
        return _load(InertYamlLoader, text)


def _load(loader_class, text: str) -> tuple[object, list[str]]:
    loader = loader_class(text)
    try:
        return loader.get_single_data(), loader.python_tags
    finally:
        loader.dispose()


def load_json(text: str, check_depth: bool = True):
    """json.loads within the nesting cap. Raises ValueError (ParseLimit over a cap)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise _too_deep(MAX_NESTING_DEPTH.value()) from None
    if check_depth:
        check_nesting(value)
    return value


def load_toml(text: str) -> dict:
    """tomllib.loads within the nesting cap. Raises tomllib.TOMLDecodeError or ParseLimit."""
    try:
        value = tomllib.loads(text)
    except RecursionError:
        raise _too_deep(MAX_NESTING_DEPTH.value()) from None
    check_nesting(value)
    return value


def check_nesting(value) -> None:
    """Raise ParseLimit when `value` nests deeper than MAX_NESTING_DEPTH; iterative, so never recurses."""
    limit = MAX_NESTING_DEPTH.value()
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            raise _too_deep(limit)
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def scalar_from_text(text: str):
    """`"3"` -> 3, `"3e-4"` -> 0.0003, anything else stays text (a param value written as a string)."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text
