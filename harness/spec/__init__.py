"""YAML ablation spec -> validated spec -> fully resolved, hashed run configs."""

from harness.spec.errors import SpecError
from harness.spec.expand import MAX_RUNS, PlannedRun, count_runs, expand, validate_profiles
from harness.spec.load import LoadedSpec, load_spec
from harness.spec.select import only_variants, parse_names, parse_seeds, spec_runs

__all__ = ["MAX_RUNS", "LoadedSpec", "PlannedRun", "SpecError", "count_runs", "expand", "load_spec", "only_variants",
           "parse_names", "parse_seeds", "spec_runs", "validate_profiles"]
