"""Dotted-key overrides merged into nested config mappings (pure functions)."""

from __future__ import annotations

import copy
from typing import Any, Mapping


def nest(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Turn {"a.b": 1, "c": {"d": 2}} into {"a": {"b": 1}, "c": {"d": 2}}."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        leaf = nest(value) if isinstance(value, Mapping) else value
        if isinstance(leaf, dict) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]] = deep_merge(node[parts[-1]], leaf)
        else:
            node[parts[-1]] = leaf
    return out


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A new mapping: `update` merged into `base`, mappings merged key by key."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    return deep_merge(config, nest(overrides))


def get_dotted(config: Mapping[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "c": 2} -> {"a.b": 1, "c": 2}; an empty mapping stays a leaf."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out
