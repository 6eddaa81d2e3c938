"""Where things are in a YAML file: line numbers for dotted fields, for error messages people can act on.

`load_yaml` composes the text (keeping every node's position) and loads it, so a validator can say
`submit_case.mapping.yaml:12: request.sqrxm: ...` instead of only naming the field. It also refuses
what PyYAML would silently accept: aliases (a few lines of anchors expand into gigabytes, and a bundle
comes from outside) and duplicate keys (PyYAML keeps the last one, hiding the first rule).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

PathStep = str | int


class YamlProblem(ValueError):
    """A YAML file that cannot be used; `line` is 1-based (None when unknown)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Positions:
    """Line numbers of a composed YAML document."""

    root: yaml.Node | None

    def line(self, path: Sequence[PathStep]) -> int:
        """The line of the deepest key of `path` present in the file (1 for an empty document)."""
        node = self.root
        if node is None:
            return 1
        line = node.start_mark.line + 1
        for step in path:
            found = _child(node, step)
            if found is None:
                break
            line, node = found
        return line


def _child(node: yaml.Node, step: PathStep) -> tuple[int, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(step):
                return key.start_mark.line + 1, value
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        item = node.value[step]
        return item.start_mark.line + 1, item
    return None


# libyaml's parser where PyYAML has it: the same nodes and documents (the constructor and resolver are
# PyYAML's own), parsed about ten times faster; a gateway start reads every active bundle's descriptor
# and mappings. A text it refuses is read again by the pure-Python parser, whose messages we report.
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _refuse_aliases(text: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> None:
    # Checked on the event stream, before any node graph exists, so a bomb costs nothing to refuse.
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            assert event.start_mark is not None  # the parser marks every event it emits
            raise YamlProblem(event.start_mark.line + 1, "YAML aliases (*name) are not allowed")


_STR_TAG = "tag:yaml.org,2002:str"


def _duplicates(node: yaml.Node | None, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], int]]:
    """Keys written twice, and keys written differently that load as one (`01` and `1`, `yes` and `true`:
    PyYAML keeps the last), or that read as one code (`"1"` and `1`)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            name = str(key.value)
            loaded = _loaded_key(key)
            if name in seen or loaded in seen:
                yield path + (name,), key.start_mark.line + 1
            seen.update((name, loaded))
            yield from _duplicates(value, path + (name,))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicates(item, path + (str(index),))


def _loaded_key(key: yaml.Node) -> Any:
    """The key as the loaded document holds it (a string as written costs no constructing)."""
    if not isinstance(key, yaml.ScalarNode) or key.tag == _STR_TAG:
        return str(key.value)
    return yaml.constructor.SafeConstructor().construct_object(key)


def load_yaml(text: str) -> tuple[Any, Positions]:
    """The document and its positions; `YamlProblem` (with the line) if it is not plain, valid YAML."""
    try:
        return _composed(text, _FAST_LOADER)
    except yaml.YAMLError:
        pass  # invalid: the pure-Python parser below says where and why
    try:
        return _composed(text, yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        raise YamlProblem(line, f"invalid YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise YamlProblem(None, f"invalid YAML: {exc}") from exc


def _composed(text: str, loader: type[yaml.SafeLoader]) -> tuple[Any, Positions]:
    """Parsed once: the node graph kept for positions, the document constructed from it (as `safe_load`)."""
    _refuse_aliases(text, loader)
    root = yaml.compose(text, Loader=loader)
    for path, line in _duplicates(root):
        raise YamlProblem(line, f"duplicate key {'.'.join(path)!r}")
    constructor = loader("")
    try:
        return (None if root is None else constructor.construct_document(root)), Positions(root)
    finally:
        constructor.dispose()
