"""`harness results`, `harness db upgrade|info` and `harness import`."""

from __future__ import annotations

import json
import os
from io import StringIO

import pandas as pd
import pytest
import typer
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from harness.cli.store import register
from harness.store import open_store, upgrade_store
from harness.store.migrate import head_revision

PAPER_CSV = """spec,variant,label,model.name,distillation.kind,top1,top5,throughput,info.note
distillation,none,no distillation,deit_tiny_patch16_224,none,72.2,91.1,2536,Table 3
distillation,hard,hard distillation,deit_tiny_patch16_224,hard,74.3,—,2536,Table 3
distillation,soft,usual distillation,deit_tiny_patch16_224,soft,72.2,,2536,
"""


@pytest.fixture
def cli():
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def paper_csv(tmp_path):
    path = tmp_path / "paper.csv"
    path.write_text(PAPER_CSV)
    return path


def test_import_then_results_in_every_format(cli, store_url, paper_csv):
    result = cli("import", paper_csv, "--source", "deit-paper", "--db", store_url)
    assert result.exit_code == 0, result.output
    assert "imported 3 runs (3 new)" in result.output and "distillation" in result.output
    again = cli("import", paper_csv, "--source", "deit-paper", "--db", store_url)
    assert "imported 3 runs (0 new)" in again.output

    table = cli("results", "--db", store_url, "--spec", "distillation")
    assert table.exit_code == 0, table.output
    assert "hard" in table.output and "74.3" in table.output and "deit-paper" in table.output

    df = pd.read_csv(StringIO(cli("results", "--db", store_url, "--format", "csv").output))
    assert sorted(df["variant"]) == ["hard", "none", "soft"] and set(df["status"]) == {"completed"}
    hard = df.set_index("variant").loc["hard"]
    assert hard["top1"] == 74.3 and pd.isna(hard["top5"]) and hard["throughput"] == 2536
    assert hard["config.model.name"] == "deit_tiny_patch16_224" and hard["distillation.kind"] == "hard"
    assert hard["info.note"] == "Table 3" and hard["label"] == "hard distillation"
    assert df.set_index("variant").loc["none", "distillation.kind"] == "none"

    rows = json.loads(cli("results", "--db", store_url, "--format", "json",
                          "--where", "distillation.kind=soft", "--where", "top1=72.2").output)
    assert [r["variant"] for r in rows] == ["soft"] and rows[0]["source"] == "deit-paper"

    picked = cli("results", "--db", store_url, "--columns", "variant,top1", "--where", "variant=none")
    assert picked.output.split() == ["variant", "top1", "none", "72.2"]
    assert "no runs" in cli("results", "--db", store_url, "--status", "failed").output
    assert "74.3" in cli("results", "--db", store_url, "--status", "failed,completed").output


def test_bad_input_is_one_line_and_exit_2(cli, sqlite_url, tmp_path, paper_csv):
    assert cli("import", paper_csv, "--source", "p", "--db", sqlite_url).exit_code == 0
    result = cli("results", "--db", sqlite_url, "--where", "model.nme=x")
    assert result.exit_code == 2 and "did you mean" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("spec,top1\nx,1\n")
    result = cli("import", bad, "--source", "p", "--db", sqlite_url)
    assert result.exit_code == 2 and "no 'variant' column" in result.output
    bad.write_text("variant,metric.top1\nx,high\n")
    result = cli("import", bad, "--source", "p", "--spec", "s", "--db", sqlite_url)
    assert result.exit_code == 2 and "row 2, column metric.top1" in result.output
    result = cli("results", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert result.exit_code == 2 and "no results store" in result.output


def test_db_upgrade_and_info(cli, store_url, planned):
    upgrade_store(store_url, "0001")
    info = cli("db", "info", "--db", store_url)
    assert info.exit_code == 0, info.output
    assert "revision: 0001" in info.output and "harness db upgrade --db" in info.output
    result = cli("db", "upgrade", "--db", store_url)
    assert result.exit_code == 0 and f"from schema revision 0001 to {head_revision()}" in result.output
    assert "nothing to do" in cli("db", "upgrade", "--db", store_url).output
    with open_store(store_url) as store:
        store.register_runs("ablation", planned(3))
    info = cli("db", "info", "--db", store_url)
    assert "up to date" in info.output and "runs.pending" in info.output and " 3" in info.output


def test_db_upgrade_creates_a_new_sqlite_store(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'new.db'}"
    assert "revision: none" in cli("db", "info", "--db", url).output
    assert not (tmp_path / "sub" / "new.db").exists()
    result = cli("db", "upgrade", "--db", url)
    assert result.exit_code == 0 and "created a results store" in result.output
    assert "up to date" in cli("db", "info", "--db", url).output


def test_a_password_is_never_printed(cli, pg_url, paper_csv):
    good = make_url(pg_url)
    if os.environ.get("PGPASSWORD"):  # the fixture's URL leaves its password there: put it back in the URL
        good = good.set(password=os.environ["PGPASSWORD"])
    assert cli("import", paper_csv, "--source", "p", "--db", pg_url).exit_code == 0
    for url in (good, good.set(password="wr0ng-s3cret")):
        text = url.render_as_string(hide_password=False)
        for args in (("results", "--db", text), ("db", "info", "--db", text), ("db", "upgrade", "--db", text),
                     ("import", paper_csv, "--source", "p", "--db", text)):
            result = cli(*args)
            assert f":{url.password}@" not in result.output, (args, result.output)
            assert args[0] == "results" and result.exit_code == 0 or "***" in result.output, (args, result.output)
            if url.password != good.password:
                assert result.exit_code == 2 and "wr0ng-s3cret" not in result.output
    with open_store(pg_url) as store:
        assert all(":harness@" not in json.dumps(r.provenance) for r in store.runs())


def test_an_axis_column_shows_the_config_value_of_a_run_off_the_axis(cli, sqlite_url, planned):
    """A teacher has no `model.name` coordinate (the students' axis), but a model: results shows it, as the filter
    on model.name matches it."""
    from dataclasses import replace

    from harness.config import ModelConfig, run_hash

    students = planned(2)
    config = students[0].config.model_copy(update={"model": ModelConfig(name="resnet_tiny_32")})
    teacher = replace(students[0], hash=run_hash(config), config=config, variant="teacher", coords={})
    with open_store(sqlite_url) as store:
        store.register_experiment("ablation", "", None)
        store.register_runs("ablation", [*students, teacher])
    for args in ((), ("--where", "model.name in ('resnet_tiny_32', 'tiny_vit')")):
        table = cli("results", "--db", sqlite_url, *args)
        row = next(line for line in table.output.splitlines() if "teacher" in line)
        assert "resnet_tiny_32" in row and "—" not in row.split("teacher")[1].split()[:2], table.output
    rows = json.loads(cli("results", "--db", sqlite_url, "--format", "json").output)
    assert {r["variant"]: r["model.name"] for r in rows} == {"v0": "tiny_vit", "v1": "tiny_cnn", "teacher": "resnet_tiny_32"}
