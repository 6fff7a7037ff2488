"""Dotted-key overrides merged into nested config mappings (pure functions; the keys: `harness.dotted`)."""

from __future__ import annotations

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
    """A new mapping: `update` merged into `base`, mappings merged key by key.

    Neither input is changed, and the result shares the values it does not change with them (a run's config is
    merged from layers that thousands of runs share: copying every layer for every run made planning a large
    grid cost seconds). Nothing changes a merged config in place: it is only read, merged again, or validated."""
    out = dict(base)
    for key, value in update.items():
        current = out.get(key)
        # `type(...) is dict` first: the ABC check of isinstance(..., Mapping) is slow, and nearly every value is a dict
        if (type(value) is dict or isinstance(value, Mapping)) and (type(current) is dict or isinstance(current, Mapping)):
            out[key] = deep_merge(current, value)
        else:
            out[key] = value
    return out


def apply(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    return deep_merge(config, nest(overrides))
