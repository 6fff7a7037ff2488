"""Read a YAML spec file safely and validate its shape."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.spec import reader
from harness.config import RunConfig
from harness.spec.errors import SpecError, shown_key
from harness.spec.schema import Spec


@dataclass(frozen=True)
class LoadedSpec:
    spec: Spec
    path: str
    text: str


def read_yaml_mapping(path: Path, what: str = "spec") -> tuple[dict[str, Any], str]:
    """A YAML file's top-level mapping and its text; any problem is a SpecError naming the file."""
    shown = str(path)
    if not path.is_file():
        raise SpecError(shown, None, f"{what} file not found")
    try:
        text = reader.read_text(path)
        data = reader.parse(text)
    except reader.YamlError as exc:
        raise SpecError(shown, None, str(exc)) from None
    except OSError as exc:
        raise SpecError(shown, None, f"cannot read the {what} file ({exc.strerror or exc})") from None
    if data is None:
        raise SpecError(shown, None, f"the {what} file is empty; expected a mapping with at least 'name'")
    if not isinstance(data, dict):
        raise SpecError(shown, None, f"expected a mapping at the top level, got {type(data).__name__}")
    return data, text


def load_spec(path: str | Path) -> LoadedSpec:
    path = Path(path)
    data, text = read_yaml_mapping(path)
    _check_some_key_known(data, Spec, path, None, "spec")
    base = data.get("base")
    if isinstance(base, str):
        base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
        try:
            data["base"], _ = read_yaml_mapping(base_path, what="base config")
        except SpecError as exc:
            raise SpecError(str(path), "base", f"{exc.path}: {exc.message}") from None
        _check_some_key_known(data["base"], RunConfig, path, "base", "base config", base_path)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise validation_error(str(path), exc, Spec) from None
    return LoadedSpec(spec=spec, path=str(path), text=text)


def _check_some_key_known(data: dict[str, Any], model: type[BaseModel], path: Path, key: str | None, what: str,
                          shown: Path | None = None) -> None:
    """A mapping without one key of `model` is some other file (YAML reads many a text as one mapping): it is
    refused without quoting any of it."""
    if data and not any(str(k).split(".")[0] in model.model_fields for k in data):
        where = f"{shown}: " if shown else ""
        raise SpecError(str(path), key, f"{where}not a {what}: none of its top-level keys is one of "
                                        f"{', '.join(model.model_fields)}")


def validation_error(path: str, exc: ValidationError, model: type[BaseModel], prefix: str = "",
                     key: str | None = None) -> SpecError:
    """The first pydantic error as a SpecError naming the key (`key`, else `prefix` + its location) and what is
    allowed there."""
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    shown = ".".join(shown_key(p) for p in loc)
    if key is not None and key.endswith(".".join(loc)):  # `key` is where in the spec + `loc`
        key = key[:len(key) - len(".".join(loc))] + shown
    key = key or ".".join(((prefix,) if prefix else ()) + ((shown,) if shown else ())) or None
    if err["type"] == "extra_forbidden":
        allowed = allowed_keys(model, loc[:-1])
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return SpecError(path, key, f"unknown key{hint}")
    msg = err["msg"]
    # a missing key's "input" is the whole mapping around it: nothing worth quoting
    if err["type"] not in ("value_error", "assertion_error", "missing") and "input" in err:
        msg = f"{msg} (got {_short(err['input'])})"
    return SpecError(path, key, msg)


def allowed_keys(model: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    """Field names of the model reached by following `loc` from `model` (empty if not a model)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            # a dict[str, Model] level: the key is a name, the model is the value type
            current = _value_model(current)
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _inner_model(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None and found is not type(None):
            if isinstance(found, type) and issubclass(found, BaseModel):
                return found
    origin = typing.get_origin(annotation)
    if origin is dict:
        return annotation
    return None


def _value_model(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    return _inner_model(args[-1]) if args else None


def _short(value: Any, limit: int = 60) -> str:
    """A value as an error message may quote it: one line, cut short."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
