"""Dotted keys over nested configs (`harness.dotted`), the one home of what specs, imports and reports share."""

from __future__ import annotations

import pytest

from harness import dotted

CONFIG = {"model": {"name": "deit_tiny_patch4_32", "drop": None}, "data": {"img_size": 16},
          "betas": [0.9, 0.999], "tags": ["quick"], "augment": {}}


def test_get_tells_a_missing_key_from_a_none_value():
    assert dotted.get(CONFIG, "model.name") == "deit_tiny_patch4_32"
    assert dotted.get(CONFIG, "model.drop", dotted.MISSING) is None
    assert dotted.get(CONFIG, "model.depth", dotted.MISSING) is dotted.MISSING
    assert dotted.get(CONFIG, "model.depth") is None
    # a part inside a value that is not a mapping (a string, a list) is missing, never an index or a character
    assert dotted.get(CONFIG, "model.name.deit", dotted.MISSING) is dotted.MISSING
    assert dotted.get(CONFIG, "tags.quick", dotted.MISSING) is dotted.MISSING
    assert dotted.get(CONFIG, "augment") == {}


def test_put_creates_the_mappings_on_the_way_and_replaces_or_refuses_a_value_there():
    tree: dict = {"model": {"name": "a"}, "finetune": None}
    dotted.put(tree, "model.drop", 0.1)
    dotted.put(tree, "data.img_size", 16)
    assert tree == {"model": {"name": "a", "drop": 0.1}, "finetune": None, "data": {"img_size": 16}}
    dotted.put(tree, "finetune.from_run", "x")
    assert tree["finetune"] == {"from_run": "x"}
    with pytest.raises(ValueError, match=r"key 'model\.name\.x' sets inside a value that is not a mapping"):
        dotted.put(tree, "model.name.x", 1, replace=False)
    with pytest.raises(ValueError, match="not a mapping"):
        dotted.put({"a": None}, "a.b", 1, replace=False)
    assert tree["model"]["name"] == "a"


def test_flatten_keeps_lists_none_and_empty_mappings_as_leaves():
    assert dotted.flatten(CONFIG) == {"model.name": "deit_tiny_patch4_32", "model.drop": None, "data.img_size": 16,
                                      "betas": [0.9, 0.999], "tags": ["quick"], "augment": {}}
    assert dotted.flatten({"a": {"b": 1}}, "config.") == {"config.a.b": 1}
    tree: dict = {}
    for key, value in dotted.flatten(CONFIG).items():
        dotted.put(tree, key, value)
    assert tree == CONFIG
