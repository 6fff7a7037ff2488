"""Spec -> fully resolved run configs: a pure function of the spec and the chosen profile.

Each run's config is built in this order, later layers winning: the spec's base, the axis
values of the run, the variant's presets and `set`, the profile's `set`, the profile's
presets and `set` for that variant, and the seed. References to other runs of the spec
(`distillation.teacher.run`, `finetune.from_run`) name a variant; they are replaced by that
variant's matching run hash (same seed, same values on shared axes), so a student's hash
changes whenever its teacher's config does.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from harness import dotted, registry
from harness.config import RunConfig, run_hash, short_hash
from harness.spec.errors import SpecError
from harness.spec.load import LoadedSpec, validation_error
from harness.spec.overrides import apply, deep_merge, nest
from harness.spec.schema import AxisValues, Profile, ProfileVariant, Spec, Variant

HASH_RE = re.compile(r"^[0-9a-f]{64}$")
REFERENCE_KEYS = ("distillation.teacher.run", "finetune.from_run")
# the most runs a spec may expand to under one profile unless the command line says otherwise (--max-runs)
MAX_RUNS = 10_000


@dataclass(frozen=True)
class PlannedRun:
    hash: str
    config: RunConfig
    spec: str
    profile: str | None
    variant: str
    label: str
    coords: dict[str, Any]
    seed: int
    depends_on: tuple[str, ...] = field(default=())

    @property
    def short(self) -> str:
        return short_hash(self.hash)

    def describe(self) -> str:
        axes = " ".join(f"{k}={v}" for k, v in self.coords.items())
        return f"{self.variant} seed={self.seed}" + (f" {axes}" if axes else "")


@dataclass
class _Draft:
    variant: str
    label: str
    coords: dict[str, Any]
    seed: int
    raw: dict[str, Any]
    hash: str | None = None
    config: RunConfig | None = None
    depends_on: tuple[str, ...] = ()
    # the layers merged into `raw`, in order: (nested overrides, where in the spec they were written)
    layers: list[tuple[dict[str, Any], str]] = field(default_factory=list)

    def layer(self, nested: dict[str, Any], where: str) -> None:
        """Merge one layer of overrides, already nested (`overrides.nest`), into the raw config."""
        self.raw = deep_merge(self.raw, nested)
        self.layers.append((nested, where))

    @property
    def origins(self) -> dict[str, str]:
        """Dotted config key -> where in the spec its value was last written ("base", "profiles.quick.set"...):
        worked out only when an error needs it, not for every run."""
        origins: dict[str, str] = {}
        for nested, where in self.layers:
            for key in dotted.flatten(nested):
                # a later layer that sets a whole mapping hides what earlier layers wrote inside it
                for known in [k for k in origins if k.startswith(key + ".")]:
                    del origins[known]
                origins[key] = where
        return origins

    def origin(self, loc: tuple[str, ...]) -> str | None:
        """Where the value at config location `loc` was written, as a dotted spec key."""
        origins = self.origins
        for depth in range(len(loc), 0, -1):
            key = ".".join(loc[:depth])
            if key in origins:
                return f"{origins[key]}.{'.'.join(loc)}"
        return None


def expand(loaded: LoadedSpec, profile: str | None = None, seeds: list[int] | None = None,
           max_runs: int | None = MAX_RUNS) -> list[PlannedRun]:
    """The spec's runs under `profile`; `seeds` (the command line's `--seeds`) replace the profile's and the
    spec's seeds, not those a variant pins (`harness.spec.select`). Above `max_runs` (None: no bound) a
    SpecError names the count, found from the axes, variants and seeds before anything is built."""
    spec, path = loaded.spec, loaded.path
    try:
        # the lab's own modules first: the names they register are checked below like the built-in ones
        registry.import_modules(spec.imports)
    except registry.ImportFailed as exc:
        raise SpecError(path, "imports", str(exc)) from None
    prof = _profile(spec, path, profile)
    _check_count(loaded, profile, max_runs, seeds)
    drafts = _drafts(spec, prof, profile, path, seeds)
    _resolve(drafts, path)
    runs: dict[str, PlannedRun] = {}
    for d in drafts:
        assert d.hash is not None and d.config is not None
        # identical configs reached from several variants or axis values are one run
        runs.setdefault(d.hash, PlannedRun(
            hash=d.hash, config=d.config, spec=spec.name, profile=profile, variant=d.variant,
            label=d.label, coords=d.coords, seed=d.seed, depends_on=d.depends_on,
        ))
    return list(runs.values())


def count_runs(loaded: LoadedSpec, profile: str | None = None, seeds: list[int] | None = None) -> int:
    """How many runs the spec expands to under `profile`, from its axes, variants and seeds alone (at most: runs
    with identical configs are one run): no run is built, so a grid of 10^9 is counted at once."""
    spec, path = loaded.spec, loaded.path
    prof = _profile(spec, path, profile)
    return sum(math.prod(len(values) for values in plan.axes.values()) * len(plan.seeds)
               for plan in _variant_plans(spec, prof, profile, path, seeds))


def _check_count(loaded: LoadedSpec, profile: str | None, max_runs: int | None,
                 seeds: list[int] | None = None) -> None:
    if max_runs is None:
        return
    count = count_runs(loaded, profile, seeds)
    if count > max_runs:
        under = f"profile '{profile}'" if profile is not None else "paper scale (no profile)"
        raise SpecError(loaded.path, f"profiles.{profile}" if profile is not None else "axes",
                        f"expands to {count:,} runs under {under}, above --max-runs {max_runs:,} "
                        "(fewer axis values or seeds, or a higher --max-runs)")


def validate_profiles(loaded: LoadedSpec, max_runs: int | None = MAX_RUNS) -> dict[str | None, list[PlannedRun]]:
    """Expand the spec under every profile (and paper scale): a mistake in any of them is an error now, not
    when someone first runs that profile. Every profile's count is checked against `max_runs` first. Returns the
    runs of each profile that has any (a caller planning one of them need not expand it again)."""
    names = [None, *loaded.spec.profiles]
    for name in names:
        _check_count(loaded, name, max_runs)
    expanded: dict[str | None, list[PlannedRun]] = {}
    for name in names:
        try:
            expanded[name] = expand(loaded, name, max_runs=None)
        except SpecError as exc:
            if exc.message == "the spec expands to no runs":
                continue  # a spec whose paper-scale rows are all profile-only, say
            raise
    return expanded


def _profile(spec: Spec, path: str, name: str | None) -> Profile:
    for vname, variant in spec.variants.items():
        for listed in variant.only_profiles or []:
            if listed not in spec.profiles:
                raise SpecError(path, f"variants.{vname}.only_profiles",
                                f"unknown profile '{listed}'; known profiles: {', '.join(sorted(spec.profiles))}")
    if name is None:
        return Profile()
    if name not in spec.profiles:
        known = ", ".join(sorted(spec.profiles)) or "none defined"
        raise SpecError(path, "profiles", f"unknown profile '{name}'; known profiles: {known}")
    prof = spec.profiles[name]
    for key in list(prof.variants) + list(prof.only or []):
        if key not in spec.variants:
            raise SpecError(path, f"profiles.{name}", f"unknown variant '{key}'; variants: {', '.join(spec.variants)}")
    return prof


@dataclass(frozen=True)
class _VariantPlan:
    """What one variant expands over under a profile: its axes and seeds, and the layers around them."""

    name: str
    variant: Variant
    pvar: ProfileVariant | None
    axes: AxisValues
    axes_where: str
    seeds: list[int]
    seeds_where: str


def _variant_plans(spec: Spec, prof: Profile, prof_name: str | None, path: str,
                   seeds_given: list[int] | None = None) -> list[_VariantPlan]:
    plans = []
    pwhere = f"profiles.{prof_name}"
    for vname, variant in spec.variants.items():
        if prof.only is not None and vname not in prof.only:
            continue
        if variant.only_profiles is not None and prof_name not in variant.only_profiles:
            continue
        pvar = prof.variants.get(vname)
        axes, axes_where = _first((pvar.axes if pvar else None, f"{pwhere}.variants.{vname}.axes"),
                                  (variant.axes, f"variants.{vname}.axes"), (prof.axes, f"{pwhere}.axes"),
                                  (spec.axes, "axes"))
        seeds, seeds_where = _first((pvar.seeds if pvar else None, f"{pwhere}.variants.{vname}.seeds"),
                                    (variant.seeds, f"variants.{vname}.seeds"), (seeds_given, "--seeds"),
                                    (prof.seeds, f"{pwhere}.seeds"), (spec.seeds, "seeds"))
        plans.append(_VariantPlan(vname, variant, pvar, axes, axes_where, seeds, seeds_where))
    return plans


def _drafts(spec: Spec, prof: Profile, prof_name: str | None, path: str,
            seeds_given: list[int] | None = None) -> list[_Draft]:
    drafts = []
    pwhere = f"profiles.{prof_name}"
    base = nest(spec.base)
    # a spec's `imports:` are part of every run's config, before the base
    imports = nest({"imports": spec.imports} if spec.imports else {})
    for plan in _variant_plans(spec, prof, prof_name, path, seeds_given):
        vname, variant, pvar = plan.name, plan.variant, plan.pvar
        layers_before = _preset_layers(variant.presets, f"variants.{vname}.presets", path)
        layers_after = _preset_layers(pvar.presets if pvar else [], f"{pwhere}.variants.{vname}.presets", path)
        # the layers every run of the variant shares are nested once, not once per run
        after = [(nest(o), w) for o, w in [*layers_before, (variant.set, f"variants.{vname}.set"),
                                            (prof.set, f"{pwhere}.set"), *layers_after,
                                            (pvar.set if pvar else {}, f"{pwhere}.variants.{vname}.set")]]
        for coords in _product(plan.axes):
            before = [(imports, "imports"), (base, "base"), (nest(coords), plan.axes_where)]
            for seed in plan.seeds:
                draft = _Draft(vname, variant.label or vname, dict(coords), seed, {})
                for nested, where in [*before, *after, ({"seed": seed}, plan.seeds_where)]:
                    draft.layer(nested, where)
                drafts.append(draft)
    if not drafts:
        raise SpecError(path, "variants", "the spec expands to no runs")
    return drafts


def _preset_layers(names: list[str], where: str, path: str) -> list[tuple[dict[str, Any], str]]:
    layers = []
    for name in names:
        try:
            layers.append((registry.preset_overrides(name), f"{where}.{name}"))
        except KeyError as exc:
            raise SpecError(path, where, exc.args[0]) from None
    return layers


def _first(*options: tuple[Any, str]) -> tuple[Any, str]:
    """The first (value, where it was written) whose value is given."""
    return next(o for o in options if o[0] is not None)


def _product(axes: AxisValues) -> list[dict[str, Any]]:
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*(axes[k] for k in keys))]


def _resolve(drafts: list[_Draft], path: str) -> None:
    """Hash each draft once the runs it names are hashed (teachers and fine-tune sources first)."""
    by_variant: dict[str, list[_Draft]] = {}
    for d in drafts:
        by_variant.setdefault(d.variant, []).append(d)
    visiting: set[int] = set()

    def finish(d: _Draft) -> None:
        if d.hash is not None:
            return
        if id(d) in visiting:
            raise SpecError(path, f"variants.{d.variant}", "runs depend on each other in a cycle")
        visiting.add(id(d))
        raw, deps = d.raw, []
        if dotted.get(raw, "distillation.kind") in (None, "none"):
            # a run without distillation has no teacher: it neither waits for one nor changes hash with it
            raw = apply(raw, {"distillation.teacher": None})
        for key in REFERENCE_KEYS:
            ref = dotted.get(raw, key)
            if ref is None or HASH_RE.match(str(ref)):
                continue
            source = _match(d, str(ref), by_variant, key, path)
            finish(source)
            assert source.hash is not None  # finish() hashed it
            raw = apply(raw, {key: source.hash})
            deps.append(source.hash)
        d.config = _validate(raw, d, path)
        d.hash = run_hash(d.config)
        d.depends_on = tuple(deps)
        visiting.discard(id(d))

    for d in drafts:
        finish(d)


def _match(d: _Draft, ref: str, by_variant: dict[str, list[_Draft]], key: str, path: str) -> _Draft:
    where = f"variants.{d.variant}.set.{key}"
    if ref not in by_variant:
        raise SpecError(path, where, f"names variant '{ref}', which is not in this spec (or not in this profile); "
                                     f"variants: {', '.join(by_variant)}")
    candidates = by_variant[ref]
    same_seed = [c for c in candidates if c.seed == d.seed]
    candidates = same_seed or candidates
    shared = [k for k in d.coords if all(k in c.coords for c in candidates)]
    candidates = [c for c in candidates if all(c.coords[k] == d.coords[k] for k in shared)]
    if len(candidates) != 1:
        raise SpecError(path, where, f"variant '{ref}' has {len(candidates)} runs matching seed {d.seed} "
                                     f"and {d.coords or 'no axes'}; expected exactly one")
    return candidates[0]


def _validate(raw: dict[str, Any], d: _Draft, path: str) -> RunConfig:
    prefix = f"variants.{d.variant}"
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as exc:
        loc = tuple(str(p) for p in exc.errors()[0]["loc"])
        where = d.origin(loc)
        if where is not None:
            raise validation_error(path, exc, RunConfig, key=where) from None
        raise validation_error(path, exc, RunConfig, prefix=f"{prefix} (config)") from None
    checks = [("model.name", config.model.name, registry.check_model),
              ("data.name", config.data.name, registry.check_dataset)]
    if config.model.distillation_token:
        checks.append(("model.distillation_token", config.model.name, registry.distilled_twin))
    if config.distillation.teacher is not None:
        checks.append(("distillation.teacher.model", config.distillation.teacher.model, registry.check_model))
    for key, value, check in checks:
        try:
            check(value)
        except KeyError as exc:
            where = d.origin(tuple(key.split("."))) or f"{prefix} (config) {key}"
            raise SpecError(path, where, exc.args[0]) from None
    return config
