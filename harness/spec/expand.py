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
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from harness import registry
from harness.config import RunConfig, run_hash, short_hash
from harness.presets import PRESETS
from harness.spec.errors import SpecError
from harness.spec.load import LoadedSpec, validation_error
from harness.spec.overrides import apply, get_dotted
from harness.spec.schema import AxisValues, Profile, Spec

HASH_RE = re.compile(r"^[0-9a-f]{64}$")
REFERENCE_KEYS = ("distillation.teacher.run", "finetune.from_run")


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


def expand(loaded: LoadedSpec, profile: str | None = None) -> list[PlannedRun]:
    spec, path = loaded.spec, loaded.path
    prof = _profile(spec, path, profile)
    drafts = _drafts(spec, prof, profile, path)
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


def _drafts(spec: Spec, prof: Profile, prof_name: str | None, path: str) -> list[_Draft]:
    drafts = []
    # a base may use dotted keys too
    base = apply({}, spec.base)
    for vname, variant in spec.variants.items():
        if prof.only is not None and vname not in prof.only:
            continue
        if variant.only_profiles is not None and prof_name not in variant.only_profiles:
            continue
        pvar = prof.variants.get(vname)
        axes = _first(pvar.axes if pvar else None, variant.axes, prof.axes, spec.axes)
        seeds = _first(pvar.seeds if pvar else None, variant.seeds, prof.seeds, spec.seeds)
        presets = list(variant.presets) + (list(pvar.presets) if pvar else [])
        for name in presets:
            if name not in PRESETS:
                raise SpecError(path, f"variants.{vname}.presets",
                                f"unknown preset '{name}'; known presets: {', '.join(sorted(PRESETS))}")
        for coords in _product(axes):
            for seed in seeds:
                raw = apply(base, coords)
                for name in presets[: len(variant.presets)]:
                    raw = apply(raw, PRESETS[name])
                raw = apply(raw, variant.set)
                raw = apply(raw, prof.set)
                if pvar:
                    for name in pvar.presets:
                        raw = apply(raw, PRESETS[name])
                    raw = apply(raw, pvar.set)
                raw = apply(raw, {"seed": seed})
                drafts.append(_Draft(vname, variant.label or vname, dict(coords), seed, raw))
    if not drafts:
        raise SpecError(path, "variants", "the spec expands to no runs")
    return drafts


def _first(*options: Any) -> Any:
    return next(o for o in options if o is not None)


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
        if get_dotted(raw, "distillation.kind") in (None, "none"):
            # a run without distillation has no teacher: it neither waits for one nor changes hash with it
            raw = apply(raw, {"distillation.teacher": None})
        for key in REFERENCE_KEYS:
            ref = get_dotted(raw, key)
            if ref is None or HASH_RE.match(str(ref)):
                continue
            source = _match(d, str(ref), by_variant, key, path)
            finish(source)
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
            raise SpecError(path, f"{prefix} (config) {key}", exc.args[0]) from None
    return config
