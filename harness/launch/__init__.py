"""Plan runs against the store, claim what is not done, submit it through submitit, watch and steer it."""

from harness.launch.interrupts import LaunchInterrupted
from harness.launch.launcher import (
    LaunchOptions, PreflightError, dry_run, launch, launch_spec, prepare, submit_runs,
)
from harness.launch.outcome import Failure, LaunchResult
from harness.launch.plan import PlanEntry, dependency_order, format_plan, plan

__all__ = ["Failure", "LaunchInterrupted", "LaunchOptions", "LaunchResult", "PlanEntry", "PreflightError",
           "dependency_order", "dry_run", "format_plan", "launch", "launch_spec", "plan", "prepare", "submit_runs"]
