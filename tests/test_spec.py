"""Spec loading, expansion and run identity."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from harness.config import RunConfig, run_hash
from harness.spec import SpecError, expand, load_spec

SPEC = """
name: demo
table: 3
base:
  data: {name: digits, img_size: 32}
  schedule.epochs: 2
  distillation:
    teacher: {model: resnet_tiny_32, run: teacher}
axes:
  model.name: [deit_tiny_patch4_32, deit_small_patch4_32]
variants:
  teacher:
    axes: {}
    set: {model.name: resnet_tiny_32, distillation.teacher: null}
  plain:
    set: {distillation.kind: none}
  hard:
    presets: [no_mixup]
    set: {distillation.kind: hard}
seeds: [0, 1]
profiles:
  quick:
    set: {schedule.epochs: 1}
    seeds: [0]
    variants:
      hard: {set: {distillation.alpha: 0.25}}
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_expansion_is_the_product_of_variants_axes_and_seeds(tmp_path):
    runs = expand(load_spec(write(tmp_path, SPEC)))
    by_variant = {}
    for run in runs:
        by_variant.setdefault(run.variant, []).append(run)
    # teacher: no axes, 2 seeds; plain and hard: 2 models x 2 seeds
    assert len(by_variant["teacher"]) == 2
    assert len(by_variant["plain"]) == 4
    assert len(by_variant["hard"]) == 4
    assert {r.coords["model.name"] for r in by_variant["plain"]} == {"deit_tiny_patch4_32", "deit_small_patch4_32"}
    assert all(r.config.schedule.epochs == 2 for r in runs)
    hard = by_variant["hard"][0]
    assert hard.config.augment.mixup == 0.0  # from the preset
    assert hard.config.distillation.kind == "hard"


def test_teacher_reference_becomes_the_matching_runs_hash(tmp_path):
    runs = expand(load_spec(write(tmp_path, SPEC)))
    teachers = {r.seed: r.hash for r in runs if r.variant == "teacher"}
    for run in runs:
        if run.variant in ("teacher", "plain"):
            assert run.depends_on == ()
            continue
        assert run.config.distillation.teacher.run == teachers[run.seed]
        assert run.depends_on == (teachers[run.seed],)


def test_profile_applies_last(tmp_path):
    runs = expand(load_spec(write(tmp_path, SPEC)), "quick")
    assert {r.seed for r in runs} == {0}
    assert all(r.config.schedule.epochs == 1 for r in runs)
    assert {r.config.distillation.alpha for r in runs if r.variant == "hard"} == {0.25}
    assert {r.config.distillation.alpha for r in runs if r.variant == "plain"} == {0.5}
    assert all(r.profile == "quick" for r in runs)


def test_hash_is_the_sorted_json_of_the_resolved_config(tmp_path):
    runs = expand(load_spec(write(tmp_path, SPEC)))
    for run in runs:
        assert run.hash == run_hash(run.config)
        assert run.hash == run_hash(RunConfig.model_validate(run.config.as_json()))
    assert len({r.hash for r in runs}) == len(runs)
    again = expand(load_spec(write(tmp_path, SPEC, "again.yaml")))
    assert [r.hash for r in again] == [r.hash for r in runs]


def test_a_student_hash_follows_its_teacher(tmp_path):
    before = {r.variant: r.hash for r in expand(load_spec(write(tmp_path, SPEC)), "quick")}
    changed = SPEC.replace("set: {model.name: resnet_tiny_32, distillation.teacher: null}",
                           "set: {model.name: resnet_tiny_32, distillation.teacher: null, seed: 0, batch_size: 8}")
    after = {r.variant: r.hash for r in expand(load_spec(write(tmp_path, changed, "b.yaml")), "quick")}
    assert before["teacher"] != after["teacher"]
    assert before["hard"] != after["hard"]


def test_identical_configs_are_one_run(tmp_path):
    text = SPEC.replace("  hard:\n    presets: [no_mixup]\n    set: {distillation.kind: hard}",
                        "  same:\n    set: {distillation.kind: none}")
    runs = expand(load_spec(write(tmp_path, text)))
    assert len(runs) == 2 + 4
    assert {r.variant for r in runs} == {"teacher", "plain"}


def test_base_may_be_a_shared_file(tmp_path):
    write(tmp_path, "data: {name: digits, img_size: 32}\nmodel: {name: deit_tiny_patch4_32}\n", "base.yaml")
    runs = expand(load_spec(write(tmp_path, "name: b\nbase: base.yaml\n")))
    assert len(runs) == 1 and runs[0].config.data.name == "digits"


def test_only_profiles_limits_a_variant(tmp_path):
    text = SPEC.replace("  teacher:\n    axes: {}", "  teacher:\n    only_profiles: [quick]\n    axes: {}")
    text = text.replace("teacher: {model: resnet_tiny_32, run: teacher}",
                        "teacher: {model: resnet_tiny_32, checkpoint: /weights/teacher.pt}")
    assert "teacher" not in {r.variant for r in expand(load_spec(write(tmp_path, text)))}
    assert "teacher" in {r.variant for r in expand(load_spec(write(tmp_path, text, "c.yaml")), "quick")}


BAD_SPECS = {
    "yaml_syntax": ("name: x\nbase: {data: [1, 2\n", None, "invalid YAML"),
    "empty": ("", None, "empty"),
    "python_tag": ("name: x\nbase: !!python/object/apply:os.system ['echo hi']\n", None, "invalid YAML"),
    "unknown_top_key": ("name: x\nvariantz: {}\n", "variantz", "unknown key; allowed keys: name"),
    "unknown_config_key": ("name: x\nbase: {optimizer: {lrr: 1}}\n", "optimizer.lrr", "allowed keys: name, base_lr"),
    "wrong_type": ("name: x\nbase: {schedule: {epochs: many}}\n", "schedule.epochs", "integer"),
    "unknown_model": ("name: x\nbase: {model: {name: deit_tinyy_patch16_224}, data: {name: digits}}\n",
                      "model.name", "unknown model 'deit_tinyy_patch16_224'"),
    "unknown_dataset": ("name: x\nbase: {data: {name: imagenett}}\n", "data.name", "known datasets: digits"),
    "unknown_preset": ("name: x\nbase: {data: {name: digits}}\nvariants: {a: {presets: [no_mixupp]}}\n",
                       "presets", "unknown preset 'no_mixupp'"),
    "missing_base": ("name: x\nbase: nowhere.yaml\n", "base", "not found"),
    "unknown_variant_ref": ("name: x\nbase: {data: {name: digits}, distillation: {kind: hard, teacher: {run: nope}}}\n",
                            "teacher.run", "names variant 'nope'"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_is_one_error_naming_file_and_key(tmp_path, case):
    text, key, message = BAD_SPECS[case]
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        expand(load_spec(path))
    error = info.value
    assert error.path == str(path)
    if key:
        assert key in (error.key or ""), str(error)
    assert message in error.message, str(error)


# a password hash in the form of /etc/shadow: YAML reads each such line as a key
SHADOW = "root:$6$Zq9.tL$S3cr3tHashOfRootXyZ/abc.def:19000:0:99999:7:::\nalice:!:19000::::::\n"


@pytest.mark.parametrize("spec_text, other_file", [
    ("name: x\nbase: other\n", SHADOW),  # a base that is no base config
    ("name: x\nbase: other\n", "data.name: digits\n" + SHADOW),  # one config key among lines of another file
    ("name: x\nbase: other\n", "data.name: digits\n'root:$6$Zq9.tL$S3cr3tHashOfRootXyZ': 1\n"
                                  "'root:$6$Zq9.tL$S3cr3tHashOfRootXyZ': 2\n"),  # a duplicate key
    (SHADOW, None),  # a spec file that is no spec
])
def test_a_spec_error_never_quotes_a_file_that_is_no_spec(tmp_path, spec_text, other_file):
    if other_file is not None:
        (tmp_path / "other").write_text(other_file)
    path = write(tmp_path, spec_text)
    with pytest.raises(SpecError) as info:
        expand(load_spec(path))
    assert not {"Zq9", "S3cr3t", "19000", "alice"} & set(re.split(r"\W+", str(info.value))), str(info.value)
    assert "$6$" not in str(info.value)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_key_shaped_like_a_config_key_is_still_named(tmp_path):
    with pytest.raises(SpecError, match="unknown key") as info:
        expand(load_spec(write(tmp_path, "name: x\nbase: {data.name: digits, data.nme-2: 1}\n")))
    assert info.value.key == "base.data.nme-2"


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "absent.yaml")


def test_unknown_profile(tmp_path):
    with pytest.raises(SpecError, match="unknown profile 'fast'; known profiles: quick"):
        expand(load_spec(write(tmp_path, SPEC)), "fast")


def test_a_run_without_distillation_drops_the_teacher(tmp_path):
    runs = expand(load_spec(write(tmp_path, SPEC)), "quick")
    plain = [r for r in runs if r.variant == "plain"]
    assert plain and all(r.config.distillation.teacher is None and r.depends_on == () for r in plain)


def test_overrides_nest_dotted_keys_and_merge_those_that_reach_one_mapping():
    from harness.spec.overrides import apply, nest

    assert nest({"a.b": 1, "a": {"c": 2}, "x": {"y.z": 3}}) == {"a": {"b": 1, "c": 2}, "x": {"y": {"z": 3}}}
    # a value on the way to a later key is replaced by a mapping
    assert nest({"a": 1, "a.b": 2}) == {"a": {"b": 2}}
    assert apply({"a": {"b": 0, "d": 4}}, {"a.b": 1}) == {"a": {"b": 1, "d": 4}}
