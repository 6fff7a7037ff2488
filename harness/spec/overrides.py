"""Dotted-key overrides merged into nested config mappings (pure functions; the keys: `harness.dotted`)."""

from __future__ import annotations

import copy
from typing import Any, Mapping

from harness import dotted


def nest(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Turn {"a.b": 1, "c": {"d": 2}} into {"a": {"b": 1}, "c": {"d": 2}}."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        leaf = nest(value) if isinstance(value, Mapping) else value
        # two keys that reach the same mapping ("a": {...} and "a.b") both land in it
        current = dotted.get(out, str(key))
        if isinstance(leaf, dict) and isinstance(current, dict):
            leaf = deep_merge(current, leaf)
        dotted.put(out, str(key), leaf)
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
