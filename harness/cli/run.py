"""`harness run`: expand a spec, skip what is done, train the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness import paths


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("status")(status)
    app.command("logs")(logs)
    app.command("cancel")(cancel)
    app.command("retry")(retry)


DbOption = typer.Option(None, "--db", help="store URL (default: $HARNESS_DB or sqlite:///runs/harness.db)")
ExecutorOption = typer.Option("auto", help="auto (SLURM where srun exists, else local), local, debug or slurm")
SLURM = "SLURM (--executor slurm; values override the spec's slurm: section)"


def _slurm_options(spec_section, partition, nodes, gpus_per_node, cpus_per_task, mem_gb, time_min, constraint,
                   account, qos, array_parallelism, max_requeues, sbatch):
    from pydantic import ValidationError

    from harness.launch.slurm import parse_sbatch_options, slurm_config

    try:
        return slurm_config(spec_section, partition=partition, nodes=nodes, gpus_per_node=gpus_per_node,
                            cpus_per_task=cpus_per_task, mem_gb=mem_gb, timeout_min=time_min,
                            constraint=constraint, account=account, qos=qos, array_parallelism=array_parallelism,
                            max_requeues=max_requeues, additional_parameters=parse_sbatch_options(sbatch or []))
    except (ValidationError, ValueError) as exc:
        typer.echo(f"error: SLURM parameters: {exc}", err=True)
        raise typer.Exit(2)


def _store(db: Optional[str]):
    from harness.store import open_store

    db_url = db or paths.default_db_url()
    if not paths.database_exists(db_url):
        typer.echo(f"error: no store at {db_url}; run `harness run SPEC` first", err=True)
        raise typer.Exit(2)
    return open_store(db_url), db_url


def run(
    spec: Path = typer.Argument(..., help="YAML ablation spec"),
    profile: Optional[str] = typer.Option(None, help="named profile of the spec, e.g. quick"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and its estimated cost; train nothing"),
    probe: bool = typer.Option(False, "--probe", help="with --dry-run: time a few training steps of each model "
                               "here for runs that no completed run of the store can estimate"),
    executor: str = ExecutorOption,
    max_parallel: int = typer.Option(1, min=1, help="runs trained at once by the local executor"),
    db: Optional[str] = typer.Option(None, help="store URL (default: $HARNESS_DB or sqlite:///runs/harness.db)"),
    output: Optional[Path] = typer.Option(None, help="output folder (default: $HARNESS_OUTPUT or ./runs)"),
    detach: bool = typer.Option(False, "--detach", help="return after submitting (cluster executors)"),
    partition: Optional[str] = typer.Option(None, help="partition", rich_help_panel=SLURM),
    nodes: Optional[int] = typer.Option(None, help="nodes per run", rich_help_panel=SLURM),
    gpus_per_node: Optional[int] = typer.Option(None, help="GPUs per node (one task per GPU, DDP)", rich_help_panel=SLURM),
    cpus_per_task: Optional[int] = typer.Option(None, help="CPU cores per task", rich_help_panel=SLURM),
    mem_gb: Optional[float] = typer.Option(None, help="memory per node in GB (always set it)", rich_help_panel=SLURM),
    time_min: Optional[int] = typer.Option(None, "--time", help="job time limit in minutes; longer runs are requeued",
                                           rich_help_panel=SLURM),
    constraint: Optional[str] = typer.Option(None, help="node feature constraint", rich_help_panel=SLURM),
    account: Optional[str] = typer.Option(None, help="account to charge", rich_help_panel=SLURM),
    qos: Optional[str] = typer.Option(None, help="quality of service", rich_help_panel=SLURM),
    array_parallelism: Optional[int] = typer.Option(None, help="array tasks running at once", rich_help_panel=SLURM),
    max_requeues: Optional[int] = typer.Option(None, help="requeues after a time limit or preemption",
                                               rich_help_panel=SLURM),
    sbatch: Optional[list[str]] = typer.Option(None, help="extra sbatch option KEY=VALUE (repeatable)",
                                               rich_help_panel=SLURM),
) -> None:
    """Train every run of SPEC that the store does not hold yet."""
    from harness.launch import LaunchOptions, format_plan, launch, prepare
    from harness.spec import SpecError, expand, load_spec
    from harness.store import open_store

    root = paths.output_root(output)
    db_url = db or paths.default_db_url(root)
    try:
        loaded = load_spec(spec)
        runs = expand(loaded, profile)
    except SpecError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    slurm = _slurm_options(loaded.spec.slurm, partition, nodes, gpus_per_node, cpus_per_task, mem_gb, time_min, constraint, account, qos, array_parallelism, max_requeues, sbatch)
    if dry_run:
        from harness.launch.estimate import dry_run_estimate

        store = open_store(db_url) if paths.database_exists(db_url) else None
        entries = prepare(runs, store)
        typer.echo(format_plan(entries))
        todo = sum(e.state == "to_run" for e in entries)
        typer.echo(f"{len(entries)} runs: {len(entries) - todo} done or in flight, {todo} to run (dry run: nothing trained)")
        # on stderr: stdout stays the plan, one line per run, for scripts
        typer.echo(dry_run_estimate(entries, store, executor, max_parallel, slurm, probe), err=True)
        return
    root.mkdir(parents=True, exist_ok=True)
    store = open_store(db_url)
    options = LaunchOptions(executor=executor, max_parallel=max_parallel, output=root, detach=detach, slurm=slurm,
                            max_requeues=slurm.max_requeues)
    result = launch(loaded, runs, store, db_url, options, progress=lambda line: typer.echo(line))
    done = sum(e.state == "done" for e in result.entries)
    typer.echo(f"{len(result.entries)} runs: {done} already done, {len(result.submitted)} trained now, "
               f"{len(result.failures)} failed")
    if result.failures:
        for failure in result.failures:
            typer.echo(f"failed: {failure.run.short} {failure.run.describe()}: {failure.error}"
                       + (f"\n  log: {failure.log_path}" if failure.log_path else ""), err=True)
        raise typer.Exit(1)


def status(
    spec: Optional[str] = typer.Argument(None, help="spec name (default: every run)"),
    watch: bool = typer.Option(False, "--watch", help="refresh every few seconds until every run has finished"),
    interval: float = typer.Option(5.0, help="seconds between refreshes with --watch"),
    db: Optional[str] = DbOption,
) -> None:
    """Each run's state, epoch, latest top-1, job id and elapsed time."""
    import time

    from harness.launch.control import FINISHED, format_statuses, reap_dead, statuses

    store, _ = _store(db)
    while True:
        reap_dead(store)
        rows = statuses(store, spec)
        typer.echo(format_statuses(rows))
        if not watch or all(r.status in FINISHED for r in rows):
            return
        time.sleep(interval)
        typer.echo("")


def logs(run: str = typer.Argument(..., help="run hash prefix"), db: Optional[str] = DbOption) -> None:
    """Print a run's log."""
    from harness.launch.control import log_text

    store, _ = _store(db)
    try:
        typer.echo(log_text(store, run))
    except LookupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


def cancel(target: str = typer.Argument(..., help="spec name or run hash prefix"), db: Optional[str] = DbOption) -> None:
    """Cancel the unfinished runs of a spec, or one run."""
    from harness.launch.control import cancel as cancel_runs

    store, _ = _store(db)
    try:
        cancelled = cancel_runs(store, target)
    except LookupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(f"cancelled {len(cancelled)} run(s)" + "".join(f"\n  {h[:10]}" for h in cancelled))


def retry(
    spec: Optional[str] = typer.Argument(None, help="spec name (default: every spec)"),
    failed: bool = typer.Option(False, "--failed", help="resubmit failed or cancelled runs (required)"),
    executor: str = ExecutorOption,
    max_parallel: int = typer.Option(1, min=1),
    output: Optional[Path] = typer.Option(None, help="output folder (default: $HARNESS_OUTPUT or ./runs)"),
    detach: bool = typer.Option(False, "--detach"),
    db: Optional[str] = DbOption,
    partition: Optional[str] = typer.Option(None, help="partition", rich_help_panel=SLURM),
    nodes: Optional[int] = typer.Option(None, help="nodes per run", rich_help_panel=SLURM),
    gpus_per_node: Optional[int] = typer.Option(None, help="GPUs per node (one task per GPU, DDP)", rich_help_panel=SLURM),
    cpus_per_task: Optional[int] = typer.Option(None, help="CPU cores per task", rich_help_panel=SLURM),
    mem_gb: Optional[float] = typer.Option(None, help="memory per node in GB (always set it)", rich_help_panel=SLURM),
    time_min: Optional[int] = typer.Option(None, "--time", help="job time limit in minutes; longer runs are requeued",
                                           rich_help_panel=SLURM),
    constraint: Optional[str] = typer.Option(None, help="node feature constraint", rich_help_panel=SLURM),
    account: Optional[str] = typer.Option(None, help="account to charge", rich_help_panel=SLURM),
    qos: Optional[str] = typer.Option(None, help="quality of service", rich_help_panel=SLURM),
    array_parallelism: Optional[int] = typer.Option(None, help="array tasks running at once", rich_help_panel=SLURM),
    max_requeues: Optional[int] = typer.Option(None, help="requeues after a time limit or preemption",
                                               rich_help_panel=SLURM),
    sbatch: Optional[list[str]] = typer.Option(None, help="extra sbatch option KEY=VALUE (repeatable)",
                                               rich_help_panel=SLURM),
) -> None:
    """Resubmit failed or cancelled runs; each resumes from its last checkpoint."""
    from harness.launch import LaunchOptions
    from harness.launch.control import failed_runs
    from harness.launch.launcher import submit_runs

    if not failed:
        typer.echo("error: say which runs to retry: --failed", err=True)
        raise typer.Exit(2)
    store, db_url = _store(db)
    runs = failed_runs(store, spec)
    if not runs:
        typer.echo("nothing to retry")
        return
    slurm = _slurm_options(None, partition, nodes, gpus_per_node, cpus_per_task, mem_gb, time_min, constraint, account, qos, array_parallelism, max_requeues, sbatch)
    options = LaunchOptions(executor=executor, max_parallel=max_parallel, output=paths.output_root(output),
                            detach=detach, slurm=slurm, max_requeues=slurm.max_requeues)
    result = submit_runs(runs, store, db_url, options, progress=lambda line: typer.echo(line))
    typer.echo(f"{len(result.submitted)} resubmitted, {len(result.failures)} failed again")
    if result.failures:
        raise typer.Exit(1)
