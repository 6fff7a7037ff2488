"""Plan runs against the store, skip what is done, submit the rest through submitit."""

from harness.launch.launcher import Failure, LaunchOptions, LaunchResult, launch, prepare
from harness.launch.plan import PlanEntry, dependency_order, format_plan, plan

__all__ = ["Failure", "LaunchOptions", "LaunchResult", "PlanEntry", "dependency_order", "format_plan", "launch",
           "plan", "prepare"]
