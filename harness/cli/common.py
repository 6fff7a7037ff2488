"""What every `harness` command shares: its options, the one way to open the store, one-line errors.

Every command is registered through `command()`, which turns the errors a user can act on (a bad spec, a
store that cannot be opened or answers with an error, a missing file, an interrupted launch) into one line
on stderr and exit code 2 (130 for an interruption), never a traceback, and never a password.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, NoReturn, Optional

import typer

from harness import paths
from harness.words import count, first_line

SLURM = "SLURM (--executor slurm; values override the spec's slurm: section)"

Db = Annotated[Optional[str], typer.Option("--db", help="store URL (default: $HARNESS_DB, else OUTPUT/harness.db)")]
Output = Annotated[Optional[Path], typer.Option("--output", help="output folder (default: $HARNESS_OUTPUT or ./runs)")]
Executor = Annotated[str, typer.Option(help="where runs train: auto (SLURM where srun exists, else local), local "
                                            "(processes on this machine), slurm, or debug (inside this command, "
                                            "for a debugger)")]
MaxParallel = Annotated[Optional[int], typer.Option(
    min=1, help="runs trained at once by the local executor (default: one per visible GPU, each on its own; "
                "without GPUs, one per core, or cores / --threads)")]
Threads = Annotated[Optional[int], typer.Option(
    min=1, help="torch CPU threads per local run (default: $OMP_NUM_THREADS if set, else cores / max-parallel)")]
Detach = Annotated[bool, typer.Option("--detach", help="return after submitting (cluster executors)")]
Partition = Annotated[Optional[str], typer.Option(help="partition", rich_help_panel=SLURM)]
Nodes = Annotated[Optional[int], typer.Option(help="nodes per run", rich_help_panel=SLURM)]
GpusPerNode = Annotated[Optional[int], typer.Option(help="GPUs per node (one task per GPU, DDP)", rich_help_panel=SLURM)]
CpusPerTask = Annotated[Optional[int], typer.Option(help="CPU cores per task", rich_help_panel=SLURM)]
MemGb = Annotated[Optional[float], typer.Option(help="memory per node in GB (always set it)", rich_help_panel=SLURM)]
TimeMin = Annotated[Optional[int], typer.Option("--time", help="job time limit in minutes; longer runs are requeued",
                                                rich_help_panel=SLURM)]
Constraint = Annotated[Optional[str], typer.Option(help="node feature constraint", rich_help_panel=SLURM)]
Account = Annotated[Optional[str], typer.Option(help="account to charge", rich_help_panel=SLURM)]
Qos = Annotated[Optional[str], typer.Option(help="quality of service", rich_help_panel=SLURM)]
ArrayParallelism = Annotated[Optional[int], typer.Option(help="array tasks running at once", rich_help_panel=SLURM)]
MaxRequeues = Annotated[Optional[int], typer.Option(help="requeues after a time limit or preemption",
                                                    rich_help_panel=SLURM)]
Sbatch = Annotated[Optional[list[str]], typer.Option(help="extra sbatch option KEY=VALUE (repeatable)",
                                                     rich_help_panel=SLURM)]


# the options of every command that launches runs (`run`, `retry`): name -> (annotation, default)
LAUNCH_OPTIONS: dict[str, tuple[Any, Any]] = {
    "executor": (Executor, "auto"), "max_parallel": (MaxParallel, None), "threads": (Threads, None),
    "detach": (Detach, False), "partition": (Partition, None), "nodes": (Nodes, None),
    "gpus_per_node": (GpusPerNode, None), "cpus_per_task": (CpusPerTask, None), "mem_gb": (MemGb, None),
    "time_min": (TimeMin, None), "constraint": (Constraint, None), "account": (Account, None), "qos": (Qos, None),
    "array_parallelism": (ArrayParallelism, None), "max_requeues": (MaxRequeues, None), "sbatch": (Sbatch, None),
}
SLURM_OPTIONS = tuple(list(LAUNCH_OPTIONS)[4:])


@dataclass(frozen=True)
class LaunchChoices:
    """The launch options of one command line: executor choices, and the SLURM values given (None: not given)."""

    executor: str
    # None: executors.default_max_parallel
    max_parallel: Optional[int]
    threads: Optional[int]
    detach: bool
    slurm_values: dict[str, Any]

    def options(self, output: Optional[Path], slurm_section: Any = None, source: str = "the spec"):
        """LaunchOptions for runs of a spec whose `slurm:` section is `slurm_section` (written in `source`, the
        file an error names)."""
        from harness.launch import LaunchOptions
        from harness.launch.executors import default_max_parallel

        max_parallel = self.max_parallel or default_max_parallel(self.threads)
        return LaunchOptions(executor=self.executor, max_parallel=max_parallel, output=paths.output_root(output),
                             detach=self.detach, slurm=slurm_options(slurm_section, self.slurm_values, source),
                             threads=self.threads)


def with_launch_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A command that launches runs: it gets the shared launch and SLURM options (one definition for `run` and
    `retry`), gathered into its `launch: LaunchChoices` parameter."""
    signature = inspect.signature(fn, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "launch"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
             for name, (annotation, default) in LAUNCH_OPTIONS.items()]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in LAUNCH_OPTIONS}
        launch = LaunchChoices(values.pop("executor"), values.pop("max_parallel"), values.pop("threads"),
                               values.pop("detach"), values)
        return fn(*args, launch=launch, **kwargs)

    # typer reads the signature; typeshed's type of a functools.wraps wrapper has no __signature__
    wrapper.__signature__ = signature.replace(parameters=own + added)  # type: ignore[attr-defined]
    return wrapper


def store_url(db: Optional[str], output: Optional[Path] = None) -> str:
    """The store every command uses: --db, else $HARNESS_DB, else harness.db in the output folder."""
    if db and "://" in db and db not in _warned:
        from harness.store.db import password_of

        if password_of(db) is not None:
            _warned.add(db)
            typer.echo("warning: --db holds a password, which every user of this machine can read in the process "
                       "list; give it through HARNESS_DB, PGPASSWORD or ~/.pgpass instead", err=True)
    return db or paths.default_db_url(paths.output_root(output))


# the --db URLs this command has warned of: one warning, however often the command asks for its store
_warned: set[str] = set()


def open_existing_store(db: Optional[str], output: Optional[Path] = None):
    """The store, which must exist already (commands that only read or steer never create one)."""
    from harness.store import open_store

    return open_store(store_url(db, output), create=False)


# SlurmConfig fields whose command-line option has another name
OPTION_OF_FIELD = {"timeout_min": "--time", "additional_parameters": "--sbatch"}


def slurm_options(section: Any, values: dict[str, Any], source: str = "the spec"):
    """The SLURM parameters: a spec's `slurm:` section with the command line's values over it. An error names
    where the bad value was written: `source` and the section's key, or the command-line option."""
    from pydantic import ValidationError

    from harness.launch.slurm import SlurmConfig, parse_sbatch_options, slurm_config
    from harness.spec.load import validation_error

    try:
        SlurmConfig.model_validate(section or {})
    except ValidationError as exc:
        fail(first_line(validation_error(source, exc, SlurmConfig, prefix="slurm")))
    values = dict(values)
    values["timeout_min"] = values.pop("time_min", None)
    try:
        values["additional_parameters"] = parse_sbatch_options(values.pop("sbatch", None) or [])
        return slurm_config(section, **values)
    except ValidationError as exc:
        error = validation_error("", exc, SlurmConfig)
        field = (error.key or "").split(".")[0]
        option = OPTION_OF_FIELD.get(field, "--" + field.replace("_", "-"))
        fail(f"SLURM parameters: {option}: {first_line(error.message)}")
    except ValueError as exc:
        fail(f"SLURM parameters: --sbatch: {first_line(exc)}")


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A command whose user-facing errors end it with one line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        from harness.launch import LaunchInterrupted, PreflightError
        from harness.spec import SpecError
        from harness.store import StoreError

        _warned.clear()
        try:
            return fn(*args, **kwargs)
        except LaunchInterrupted as exc:
            for line in exc.lines:
                typer.echo(line, err=True)
            fail(f"interrupted by {exc.signal_name}: {count(len(exc.lines), 'run')} stopped or given back", code=130)
        except KeyboardInterrupt:
            fail("interrupted", code=130)
        except PreflightError as exc:
            lines = str(exc).splitlines()
            for line in lines[:-1]:  # in the order found
                typer.echo(f"error: {line}", err=True)
            fail(lines[-1])
        except (SpecError, StoreError, LookupError) as exc:
            fail(first_line(exc))
        except SQLAlchemyError as exc:
            fail(f"the results store answered with an error: {first_line(getattr(exc, 'orig', None) or exc)}")
        except OSError as exc:
            fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if getattr(exc, "filename", None) else ""))

    return wrapper


