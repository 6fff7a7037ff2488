"""The specs and the table definitions agree: every run a spec plans lands in the table cells meant for it,
at paper scale and in the small-scale profiles (so `harness report` fills what `harness run` trained)."""

from __future__ import annotations

import pytest

from test_report_helpers import fake_top1, fill

from harness.report import table

T5_DEIT = ["DeiT-Ti", "DeiT-S", "DeiT-B", "DeiT-B↑384", "DeiT-Ti⚗", "DeiT-S⚗", "DeiT-B⚗", "DeiT-B⚗↑384"]
T7_SETS = ["CIFAR-10", "CIFAR-100", "Flowers", "Cars", "iNat-18", "iNat-19"]


def filled_cells(df) -> set[tuple[str, str]]:
    return {(row, col) for row in df.index for col in df.attrs["column_labels"]
            if col not in df.attrs["static"] and df.loc[row, (col, "n")] > 0}


@pytest.mark.parametrize("profile", [None, "quick", "small"])
def test_model_size_fills_tables_1_and_5(sqlite_store, profile):
    fill(sqlite_store, "model_size", profile, fake_top1, epochs=1)
    t5 = filled_cells(table(5, store=sqlite_store))
    t1 = filled_cells(table(1, store=sqlite_store))
    rows = T5_DEIT if profile is None else ["DeiT-Ti", "DeiT-S", "DeiT-Ti⚗", "DeiT-S⚗"]
    assert {r for r, _ in t5} == set(rows)
    assert all((r, c) in t5 for r in rows for c in ("#param. (M)", "image size", "throughput (im/s)", "ImNet top-1"))
    assert {r for r, _ in t1} == ({"DeiT-Ti", "DeiT-S", "DeiT-B"} if profile is None else {"DeiT-Ti", "DeiT-S"})


@pytest.mark.parametrize("profile", [None, "quick", "small"])
def test_teacher_choice_fills_table_2(sqlite_store, profile):
    fill(sqlite_store, "teacher_choice", profile, fake_top1, epochs=1)
    df = table(2, store=sqlite_store)
    cols = ["teacher acc.", "student: pretrain"] + (["student: ↑384"] if profile is None else [])
    assert filled_cells(df) == {(r, c) for r in df.index for c in cols}
    if profile == "small":
        assert (df[("student: pretrain", "n")] == 3).all()


@pytest.mark.parametrize("profile", [None, "quick", "small"])
def test_distillation_fills_tables_3_and_4(sqlite_store, profile):
    fill(sqlite_store, "distillation", profile, fake_top1, epochs=1)
    df = table(3, store=sqlite_store)
    cols = ["Ti 224", "S 224", "B 224", "B↑384"] if profile is None else ["Ti 224"]
    assert filled_cells(df) == {(r, c) for r in df.index for c in cols}
    assert table(4, store=sqlite_store).attrs["origin"] is not None


@pytest.mark.parametrize("profile", [None, "quick", "small"])
def test_transfer_fills_table_7(sqlite_store, profile):
    fill(sqlite_store, "transfer", profile, fake_top1, epochs=1)
    cells = filled_cells(table(7, store=sqlite_store))
    if profile is None:
        rows = ["DeiT-B", "DeiT-B↑384", "DeiT-B⚗", "DeiT-B⚗↑384"]
        assert cells == {(r, c) for r in rows for c in ["ImageNet", *T7_SETS, "im/sec"]}
    else:
        assert cells == {(r, c) for r in ("DeiT-B", "DeiT-B⚗") for c in ("ImageNet", "CIFAR-10", "im/sec")}


@pytest.mark.parametrize("profile", [None, "quick"])
def test_training_recipe_fills_table_8(sqlite_store, profile):
    fill(sqlite_store, "training_recipe", profile, fake_top1, epochs=1)
    cells = filled_cells(table(8, store=sqlite_store))
    if profile is None:
        df = table(8, store=sqlite_store)
        assert cells == {(r, c) for r in df.index for c in df.attrs["column_labels"]}
    else:
        assert ("none: DeiT-B", "fine-tuned 384²") in cells and ("no Erasing", "pre-trained 224²") in cells


@pytest.mark.parametrize("profile", [None, "quick"])
def test_resolution_fills_table_10(sqlite_store, profile):
    fill(sqlite_store, "resolution", profile, fake_top1, epochs=1)
    df = table(10, store=sqlite_store)
    rows = {r for r, _ in filled_cells(df)}
    if profile is None:
        assert rows == set(df.index)
        assert df.loc["320²", ("image size", "ours")] == 320
    else:
        assert rows == {"160²", "224² (trained)", "320²", "384²"}
        assert df.loc["384²", ("image size", "ours")] == 48


def test_a_run_shared_by_two_specs_fills_both_tables(sqlite_store):
    """training_recipe's `baseline` and resolution's `train_224` are one run (same config, same hash)."""
    recipe = fill(sqlite_store, "training_recipe", None, fake_top1, epochs=1)
    resolution = fill(sqlite_store, "resolution", None, fake_top1, epochs=1)
    shared = {r.hash for r in recipe if r.variant == "baseline"}
    assert shared == {r.hash for r in resolution if r.variant == "train_224"}
    assert table(8, store=sqlite_store).loc["none: DeiT-B", ("pre-trained 224²", "n")] == 1
    assert table(10, store=sqlite_store).loc["224² (trained)", ("ImageNet top-1", "n")] == 1


def test_table8_ema_row_reads_the_ema_weights(sqlite_store):
    fill(sqlite_store, "training_recipe", None, fake_top1, epochs=1)
    df = table(8, store=sqlite_store)
    # fake_top1: top1 60 for these variants, and the EMA weights 0.5 better
    assert df.loc["Exp. Moving Avg.", ("pre-trained 224²", "ours")] == 60.5
    assert df.loc["Exp. Moving Avg.", ("fine-tuned 384²", "ours")] == 60.5
    assert df.loc["none: DeiT-B", ("pre-trained 224²", "ours")] == 60.0
