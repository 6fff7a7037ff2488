"""Reading a YAML file that anyone may have written, at a bounded cost.

PyYAML's safe loader builds plain data only, but on its own it reads a binary file as a traceback, recurses
until Python gives up on 10,000-deep nesting, keeps the last of two equal keys without a word, and builds an
alias bomb ("billion laughs") whose expansion costs minutes and gigabytes as soon as anything walks it. This
reader refuses each of those with one line, in well under a second, before anything is built. It also reads
`5e-4` as the number it looks like (YAML 1.2; YAML 1.1 needs a dot: `5.0e-4`).
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from collections.abc import Hashable
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

from harness.spec.errors import shown_key

# a spec is a page of text: anything larger is not one
MAX_BYTES = 1_000_000
# mappings and sequences inside each other (a spec needs about 6)
MAX_DEPTH = 64
# nodes after expanding every alias (a large spec has a few thousand)
MAX_NODES = 100_000

MERGE_TAG = "tag:yaml.org,2002:merge"
_FLOAT_WITHOUT_DOT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class YamlError(ValueError):
    """The text is not YAML this harness reads; the message is one line."""


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing duplicate keys and integers too long to convert, and reading 1e-3 as a float."""

    def construct_yaml_int(self, node: Node) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # Python converts at most sys.get_int_max_str_digits() digits (4,300 by default)
            raise ConstructorError(None, None, f"an integer of {len(str(node.value)):,} characters is too long "
                                   "to read", node.start_mark) from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:  # `<<: *base` may override what it merges: not a duplicate
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # SafeLoader explains an unhashable key itself
            if key in first_line:
                raise ConstructorError(None, None, f"duplicate key '{shown_key(str(key))}' (first on line "
                                       f"{first_line[key]})",
                                       key_node.start_mark)
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_WITHOUT_DOT, list("-+0123456789"))


def read_text(path: Path) -> str:
    """The file's text; a file too large, binary, or not UTF-8 is a YamlError."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise YamlError(f"the file is {size:,} bytes; a spec may have at most {MAX_BYTES:,}")
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise YamlError("the file is UTF-16 or UTF-32 encoded; save it as UTF-8")
    if b"\x00" in data:
        raise YamlError("the file is binary, not YAML text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise YamlError(f"the file is not UTF-8 text (byte {exc.start} cannot be decoded)") from None


def parse(text: str) -> Any:
    """The data of one YAML document, with its depth and expanded size checked before anything is built."""
    try:
        _check_depth(text)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_size(node)
            return loader.construct_document(node)  # from the node already composed, not from the text again
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise YamlError(_describe(exc)) from None


def _check_depth(text: str) -> None:
    """The nesting depth, read from the parser's events (which do not recurse) before the composer (which does)."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise YamlError(f"line {line}: nested more than {MAX_DEPTH} levels deep")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _check_size(root: Node) -> None:
    """Nodes after expanding aliases, counted once per distinct node (an alias bomb is refused, not expanded)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise YamlError(f"line {node.start_mark.line + 1}: an alias refers to the node that contains it")
        open_nodes.add(key)
        total = 1
        if isinstance(node, SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        open_nodes.discard(key)
        if total > MAX_NODES:
            raise YamlError(f"line {node.start_mark.line + 1}: aliases expand to more than {MAX_NODES:,} values "
                            "(an alias bomb?)")
        sizes[key] = total
        return total

    size(root)


def _describe(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"invalid YAML: {where}{problem}"
