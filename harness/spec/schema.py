"""The shape of a YAML ablation spec, validated with pydantic before anything is expanded."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

from harness.config import MAX_SEED

AxisValues = dict[str, list[Any]]
Seed = Annotated[int, Strict(), Field(ge=0, le=MAX_SEED)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Variant(_Strict):
    # how the variant is named in reports (defaults to its key)
    label: str | None = None
    # Table 8 recipe presets applied before `set`
    presets: list[str] = Field(default_factory=list)
    # config overrides (dotted keys or nested mappings)
    set: dict[str, Any] = Field(default_factory=dict)
    # axes for this variant instead of the spec's ({} runs it once)
    axes: AxisValues | None = None
    # seeds for this variant instead of the spec's
    seeds: list[Seed] | None = None
    # run this variant only under these profiles (None: always; a paper-scale run is the null profile)
    only_profiles: list[str] | None = None


class ProfileVariant(_Strict):
    presets: list[str] = Field(default_factory=list)
    set: dict[str, Any] = Field(default_factory=dict)
    axes: AxisValues | None = None
    seeds: list[Seed] | None = None


class Profile(_Strict):
    description: str = ""
    # overrides applied to every run, after the variant's own
    set: dict[str, Any] = Field(default_factory=dict)
    # axes replacing the spec's
    axes: AxisValues | None = None
    # seeds replacing the spec's
    seeds: list[Seed] | None = None
    # per-variant overrides, applied last
    variants: dict[str, ProfileVariant] = Field(default_factory=dict)
    # run only these variants (None: all)
    only: list[str] | None = None


class Spec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    # the paper table this spec rebuilds
    table: Annotated[int, Strict(), Field(ge=1, le=99)] | None = None
    # the base run config (resolved from a path by the loader)
    base: dict[str, Any] = Field(default_factory=dict)
    # dotted config keys -> values, expanded as a cartesian product
    axes: AxisValues = Field(default_factory=dict)
    # named override sets; a row of a paper table is a variant
    variants: dict[str, Variant] = Field(default_factory=lambda: {"default": Variant()})
    seeds: list[Seed] = Field(default_factory=lambda: [0])
    profiles: dict[str, Profile] = Field(default_factory=dict)
    # SLURM job parameters (harness.launch.slurm.SlurmConfig fields); the command line overrides them
    slurm: dict[str, Any] = Field(default_factory=dict)
    # live tracking of every run's epochs as they end: {mlflow: TRACKING_URI} (harness.export.live); --mlflow and
    # $HARNESS_MLFLOW_URI override it
    tracking: dict[Literal["mlflow"], str] = Field(default_factory=dict)
    # a lab's own modules (importable names, e.g. mylab.models), imported before the spec's names are checked and
    # in every job: the models (timm's @register_model) and datasets (harness.registry.register_dataset) they register
    imports: list[Annotated[str, Strict(), Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")]] \
        = Field(default_factory=list)
