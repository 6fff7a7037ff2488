"""`harness run` and `harness retry`: train what the store does not hold yet, or train failed runs again."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness import paths
from harness.cli.common import (
    Account, ArrayParallelism, Constraint, CpusPerTask, Db, Detach, Executor, GpusPerNode, MaxParallel, MaxRequeues,
    MemGb, Nodes, Output, Partition, Qos, Sbatch, Threads, TimeMin, command, open_existing_store, slurm_options,
    store_url,
)


def register(app: typer.Typer) -> None:
    app.command("run")(command(run))
    app.command("retry")(command(retry))


def run(
    spec: Path = typer.Argument(..., help="YAML ablation spec"),
    profile: Optional[str] = typer.Option(None, help="named profile of the spec, e.g. quick"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and its estimated cost; train nothing"),
    probe: bool = typer.Option(False, "--probe", help="with --dry-run: time a few training steps of each model "
                               "here for runs that no completed run of the store can estimate"),
    executor: Executor = "auto", max_parallel: MaxParallel = 1, threads: Threads = None,
    db: Db = None, output: Output = None, detach: Detach = False,
    partition: Partition = None, nodes: Nodes = None, gpus_per_node: GpusPerNode = None,
    cpus_per_task: CpusPerTask = None, mem_gb: MemGb = None, time_min: TimeMin = None, constraint: Constraint = None,
    account: Account = None, qos: Qos = None, array_parallelism: ArrayParallelism = None,
    max_requeues: MaxRequeues = None, sbatch: Sbatch = None,
) -> None:
    """Train every run of SPEC that the store does not hold yet."""
    from harness.launch import LaunchOptions, format_plan, launch_spec, prepare
    from harness.spec import expand, load_spec, validate_profiles
    from harness.store import open_store

    loaded = load_spec(spec)
    validate_profiles(loaded)
    runs = expand(loaded, profile)
    root = paths.output_root(output)
    db_url = store_url(db, output)
    slurm = slurm_options(loaded.spec.slurm, dict(
        partition=partition, nodes=nodes, gpus_per_node=gpus_per_node, cpus_per_task=cpus_per_task, mem_gb=mem_gb,
        time_min=time_min, constraint=constraint, account=account, qos=qos, array_parallelism=array_parallelism,
        max_requeues=max_requeues, sbatch=sbatch))
    if dry_run:
        from harness.launch.estimate import dry_run_estimate

        store = open_store(db_url, create=False) if paths.database_exists(db_url) else None
        entries = prepare(runs, store)
        typer.echo(format_plan(entries))
        todo = sum(e.state == "to_run" for e in entries)
        typer.echo(f"{len(entries)} runs: {len(entries) - todo} done or in flight, {todo} to run "
                   "(dry run: nothing trained)")
        # on stderr: stdout stays the plan, one line per run, for scripts
        typer.echo(dry_run_estimate(entries, store, executor, max_parallel, slurm, probe), err=True)
        return
    options = LaunchOptions(executor=executor, max_parallel=max_parallel, output=root, detach=detach, slurm=slurm,
                            threads=threads)
    result = launch_spec(loaded, runs, db_url, options, progress=typer.echo)
    done = sum(e.state == "done" for e in result.entries)
    typer.echo(f"{len(result.entries)} runs: {done} already done, {len(result.submitted)} trained now, "
               f"{len(result.elsewhere)} in flight elsewhere, {len(result.failures)} failed")
    _report_failures(result)


def retry(
    spec: Optional[str] = typer.Argument(None, help="spec name (default: every spec)"),
    failed: bool = typer.Option(False, "--failed", help="resubmit failed or cancelled runs (required)"),
    executor: Executor = "auto", max_parallel: MaxParallel = 1, threads: Threads = None,
    db: Db = None, output: Output = None, detach: Detach = False,
    partition: Partition = None, nodes: Nodes = None, gpus_per_node: GpusPerNode = None,
    cpus_per_task: CpusPerTask = None, mem_gb: MemGb = None, time_min: TimeMin = None, constraint: Constraint = None,
    account: Account = None, qos: Qos = None, array_parallelism: ArrayParallelism = None,
    max_requeues: MaxRequeues = None, sbatch: Sbatch = None,
) -> None:
    """Resubmit failed or cancelled runs; each resumes from its last checkpoint."""
    from harness.launch import LaunchOptions, LaunchResult, submit_runs
    from harness.launch.control import failed_runs, slurm_section

    if not failed:
        raise typer.BadParameter("say which runs to retry: --failed", param_hint="--failed")
    store = open_existing_store(db, output)
    runs = failed_runs(store, spec)
    if not runs:
        typer.echo("nothing to retry")
        return
    result = LaunchResult([])
    command_line = dict(partition=partition, nodes=nodes, gpus_per_node=gpus_per_node, cpus_per_task=cpus_per_task,
                        mem_gb=mem_gb, time_min=time_min, constraint=constraint, account=account, qos=qos,
                        array_parallelism=array_parallelism, max_requeues=max_requeues, sbatch=sbatch)
    # each spec's runs go out with that spec's own slurm: section (partition, account...)
    for name in dict.fromkeys(r.spec for r in runs):
        options = LaunchOptions(executor=executor, max_parallel=max_parallel, output=paths.output_root(output),
                                detach=detach, slurm=slurm_options(slurm_section(store, name), command_line),
                                threads=threads)
        submit_runs([r for r in runs if r.spec == name], store, store_url(db, output), options,
                    progress=typer.echo, result=result)
    typer.echo(f"{len(result.submitted)} resubmitted, {len(result.elsewhere)} in flight elsewhere, "
               f"{len(result.failures)} failed again")
    _report_failures(result)


def _report_failures(result) -> None:  # type: ignore[no-untyped-def]
    for failure in result.failures:
        typer.echo(f"failed: {failure.run.short} {failure.run.describe()}: {failure.error}"
                   + (f"\n  log: {failure.log_path}" if failure.log_path else ""), err=True)
    if result.failures:
        raise typer.Exit(1)
