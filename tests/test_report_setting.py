"""A table whose runs stand in for the paper's setting says in its caption what they were (harness.report.setting)."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

from test_report_helpers import fake_top1, fill

from harness import dotted
from harness.report import TABLES, paper, render, table
from harness.report.runs import load
from harness.store import NewRun

QUICK = ("Stand-ins for the paper's setting: the runs shown used digits at 16 px, 24 epochs; "
         "models deit_tiny_distilled_patch4_32, deit_tiny_patch4_32; teacher resnet_tiny_32.")


def test_a_quick_profile_table_says_what_its_runs_were_in_every_format(sqlite_store):
    runs = fill(sqlite_store, "distillation", "quick", fake_top1)
    df = table(3, store=sqlite_store)
    assert df.attrs["stand_ins"] == QUICK and df.attrs["caption"].startswith(QUICK)
    # read from the stored configs, not written down anywhere
    shown = [r for r in runs if r.hash in df.attrs["runs"]]
    assert {r.config.data.name for r in shown} == {"digits"} and {r.config.data.img_size for r in shown} == {16}
    assert {r.config.distillation.teacher.model for r in shown if r.config.distillation.kind != "none"} == {
        "resnet_tiny_32"}
    markdown = render(df, "markdown").splitlines()
    assert markdown[0].startswith("**Table 3.") and markdown[1] == QUICK and markdown.count(QUICK) == 1
    latex = render(df, "latex")
    caption = re.search(r"\\caption\{(.*)\}\n", latex).group(1)
    assert "Stand-ins for the paper's setting: the runs shown used digits at 16 px, 24 epochs; models " \
           r"deit\_tiny\_distilled\_patch4\_32, deit\_tiny\_patch4\_32; teacher resnet\_tiny\_32." in caption
    html = render(df, "html")
    assert re.search(r"<caption><b>Table 3\.[^<]*</b> (.*)</caption>", html).group(1).startswith(
        QUICK.replace("'", "&#x27;"))


def test_every_table_of_a_quick_profile_says_so(sqlite_store):
    for spec in ("distillation", "model_size", "resolution", "teacher_choice", "training_recipe", "transfer"):
        fill(sqlite_store, spec, "quick", fake_top1, predictions=_predictions)
    runset = load(store=sqlite_store)
    for n in TABLES:
        df = table(n, runset=runset)
        assert df.attrs["runs"] and df.attrs["stand_ins"].startswith("Stand-ins for the paper's setting"), n


def test_paper_scale_runs_and_the_papers_numbers_are_not_stand_ins(sqlite_store):
    for spec in ("distillation", "model_size", "resolution", "teacher_choice", "training_recipe", "transfer"):
        fill(sqlite_store, spec, None, fake_top1, predictions=_predictions)
    paper.import_paper(sqlite_store)
    runset = load(store=sqlite_store)
    for n in TABLES:
        for source in (None, "paper"):
            df = table(n, runset=runset, source=source)
            assert df.attrs["runs"], (n, source)
            assert df.attrs["stand_ins"] is None, (n, source, df.attrs["stand_ins"])
            assert not render(df, "markdown").splitlines()[1].startswith("Stand-ins"), (n, source)


# a DeiT-Ti run of the paper's setting for Table 3's "Ti 224" cell, and one for Table 1's DeiT-Ti row
TI_224 = {"model": {"name": "deit_tiny_patch16_224", "distillation_token": False},
          "data": {"name": "imagefolder", "root": "/datasets/imagenet", "img_size": 224},
          "schedule": {"epochs": 300}, "distillation": {"kind": "none"}, "finetune": None}


PAPER_TI = "imagefolder /datasets/imagenet at 224 px, 300 epochs; model deit_tiny_patch16_224"


@pytest.mark.parametrize("n, variant, changes, profile, used", [
    (3, "no_distillation", {}, None, None),
    (3, "no_distillation", {}, "fast", PAPER_TI),
    (3, "no_distillation", {"data.img_size": 160}, None, PAPER_TI.replace("224 px", "160 px")),
    (3, "hard_distillation", {"distillation.kind": "hard", "distillation.teacher.model": "resnet_tiny_32"}, None,
     PAPER_TI + "; teacher resnet_tiny_32"),
    # a teacher named in the config of a run that does not distil is not used
    (3, "no_distillation", {"distillation.teacher.model": "resnet_tiny_32"}, None, None),
    (3, "no_distillation", {"data.name": "fashion_mnist", "data.root": None, "data.train_subset": 6000}, None,
     "fashion_mnist (6000 training images) at 224 px, 300 epochs; model deit_tiny_patch16_224"),
    # the B↑384 column: a fine-tuned DeiT-B at the column's 384, and one left at 224
    (3, "no_distillation_384", {"model.name": "deit_base_patch16_224", "finetune": {"from_run": "x"},
                                "data.img_size": 384}, None, None),
    (3, "no_distillation_384", {"model.name": "deit_base_patch16_224", "finetune": {"from_run": "x"}}, None,
     PAPER_TI.replace("deit_tiny", "deit_base")),
    # Table 1 prints each row's training resolution: that is the paper's
    (1, "deit", {"data.img_size": 160}, None, PAPER_TI.replace("224 px", "160 px")),
    # Table 4 (disagreement between classifiers) from an imported result
    (4, "deit_distilled", {}, None, None),
    (4, "deit_distilled", {"data.img_size": 160}, None, PAPER_TI.replace("224 px", "160 px")),
])
def test_runs_stand_in_where_their_profile_or_config_is_not_the_papers(sqlite_store, n, variant, changes, profile,
                                                                        used):
    config = copy.deepcopy(TI_224)
    for key, value in changes.items():
        dotted.put(config, key, value)
    spec = "model_size" if n == 1 else "distillation"
    sqlite_store.import_runs(spec, [NewRun(hash="c" * 64, config=config, profile=profile, variant=variant,
                                           label=variant, coords={}, seed=0, status="completed", source="elsewhere",
                                           final={"top1": 70.0, "params": 5.7e6,
                                                                  "disagree_groundtruth__convnet": 0.1})])
    df = table(n, store=sqlite_store, source="elsewhere", profile=profile)
    assert len(df.attrs["runs"]) == 1
    expected = None if used is None else f"Stand-ins for the paper's setting: the runs shown used {used}."
    assert df.attrs["stand_ins"] == expected


def _predictions(run) -> dict[str, np.ndarray]:
    labels = np.arange(20) % 10
    return {name: labels for name in ("target", "teacher", "cls", "dist", "avg")}
