"""Dotted keys ("model.name", "distillation.teacher.model") over nested config mappings: get, put, flatten.

The one home of these few lines: the spec layer, the store's importer, the report and `harness.results` all
import them. Pure functions on plain data; this module imports nothing of the harness, so any layer may use it.
"""

from __future__ import annotations

from typing import Any, Mapping

# what `get` returns for a key that is not there, where None would be a value (`get(tree, key, MISSING)`)
MISSING: Any = object()


def get(tree: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """The value at `key` ("a.b.c"), or `default` where a part is absent or sits inside a non-mapping."""
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def put(tree: dict[str, Any], key: str, value: Any, *, replace: bool = True) -> None:
    """Set `value` at `key` in `tree`, creating the mappings on the way.

    A value on the way that is not a mapping is replaced by one, or with `replace=False` raises ValueError
    (an import must not silently drop a value its file gave).
    """
    *parents, last = key.split(".")
    node = tree
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            if part in node and not replace:
                raise ValueError(f"key '{key}' sets inside a value that is not a mapping")
            child = node[part] = {}
        node = child
    node[last] = value


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "c": 2} -> {"a.b": 1, "c": 2}; an empty mapping stays a leaf (its key is kept)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        # `type(value) is dict` first: isinstance(value, Mapping) alone is an ABC check, slow over 10^5 values
        if (type(value) is dict or isinstance(value, Mapping)) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
