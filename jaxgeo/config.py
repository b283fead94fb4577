"""Strict mapping of TOML / dict configuration onto frozen dataclasses.

Shared by every domain. A config class is a frozen dataclass whose fields carry their
documentation, unit and bounds in ``dataclasses.field(metadata=...)``; ``from_dict`` refuses
unknown keys, wrong types and out-of-range values before any work starts, naming the key path
(``diffusion.nu_km2_s must be >= 0, got -3``).

Field metadata understood here:
    doc:     one-line description (used by the docs generator and error messages)
    unit:    unit string, for docs
    ge, gt, le, lt: numeric bounds
    choices: allowed values
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError

T = TypeVar("T")


def option(
    default: Any = dataclasses.MISSING, *, doc: str = "", unit: str = "", **bounds: Any
) -> Any:
    """A dataclass field with documentation, unit and validation bounds."""
    metadata = {"doc": doc, "unit": unit, **bounds}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple or a default_factory for mutable defaults")
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def section(cls: type, *, doc: str = "") -> Any:
    """A nested dataclass field whose default is the class's own defaults."""
    return dataclasses.field(default_factory=cls, metadata={"doc": doc})


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "nothing"
    if isinstance(tp, type):
        return {
            "str": "a string",
            "int": "an integer",
            "float": "a number",
            "bool": "true/false",
        }.get(tp.__name__, tp.__name__)
    origin = get_origin(tp)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is tuple:
        return "a list"
    if origin in (dict, Mapping):
        return "a table"
    return str(tp)


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Convert a TOML value to type ``tp`` or raise ConfigError naming ``path``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _convert(value, non_none[0], path)
        if isinstance(value, Mapping):
            tables = [a for a in non_none if dataclasses.is_dataclass(a)]
            if len(tables) == 1:
                return _convert(value, tables[0], path)
        errors = []
        # Try dataclasses last so that scalars are matched first.
        for arg in sorted(args, key=lambda a: dataclasses.is_dataclass(a)):
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{path} must be {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in get_args(tp):
            allowed = ", ".join(repr(a) for a in get_args(tp))
            raise ConfigError(f"{path} must be one of {allowed}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path} must be a table, got {value!r}")
        return from_dict(tp, value, _path=path)  # type: ignore[arg-type]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} must be a list, got {value!r}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{path} must be a list of {len(args)} values, got {len(value)}")
        return tuple(
            _convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(args, value, strict=True))
        )
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path} must be a table, got {value!r}")
        key_tp, val_tp = get_args(tp)
        return {
            _convert(k, key_tp, f"{path}"): _convert(v, val_tp, f"{path}.{k}")
            for k, v in value.items()
        }
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{path} must be a finite number, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {path}")


def _check_bounds(value: Any, meta: Mapping[str, Any], path: str) -> None:
    if value is None:
        return
    unit = f" {meta['unit']}" if meta.get("unit") else ""
    checks = (
        ("ge", lambda v, b: v >= b, ">="),
        ("gt", lambda v, b: v > b, ">"),
        ("le", lambda v, b: v <= b, "<="),
        ("lt", lambda v, b: v < b, "<"),
    )
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        for key, ok, sym in checks:
            if key in meta and not ok(v, meta[key]):
                raise ConfigError(f"{path} must be {sym} {meta[key]}{unit}, got {v}")
    if "choices" in meta and value not in meta["choices"]:
        allowed = ", ".join(repr(c) for c in meta["choices"])
        raise ConfigError(f"{path} must be one of {allowed}, got {value!r}")


def from_dict(cls: type[T], data: Mapping[str, Any], *, _path: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys and bad values."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_path or 'config'} must be a table, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f" in [{_path}]" if _path else ""
        known = ", ".join(sorted(fields))
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(repr(u) for u in unknown)}{where}; known keys: {known}"
        )
    kwargs = {}
    for name, f in fields.items():
        path = f"{_path}.{name}" if _path else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{path} is required")
            continue
        value = _convert(data[name], hints[name], path)
        _check_bounds(value, f.metadata, path)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError as err:
        if _path and not str(err).startswith(_path):
            raise ConfigError(f"{_path}: {err}") from None
        raise


def to_dict(obj: Any) -> Any:
    """Dataclass config back to plain TOML-able data (None values dropped)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            v = to_dict(getattr(obj, f.name))
            if v is not None:
                out[f.name] = v
        return out
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file with errors that name the file."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    if p.is_dir():
        raise ConfigError(f"config file {p} is a directory, expected a TOML file")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {p} is not valid TOML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not a text (UTF-8 TOML) file") from None


def dumps_toml(data: Mapping[str, Any]) -> str:
    """Write plain nested data as TOML (tables for nested mappings)."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{_key(k)} = {fmt(x)}" for k, x in v.items()) + " }"
        raise TypeError(f"cannot write {v!r} as TOML")

    def _key(k: str) -> str:
        return k if k.replace("_", "").replace("-", "").isalnum() else fmt(k)

    lines: list[str] = []

    def emit(table: Mapping[str, Any], prefix: str) -> None:
        def inline(v: Any) -> bool:
            return not isinstance(v, Mapping) or (bool(prefix) and _inline(v))

        scalars = {k: v for k, v in table.items() if inline(v)}
        tables = {k: v for k, v in table.items() if not inline(v)}
        if prefix and (scalars or not tables):
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{_key(k)} = {fmt(v)}")
        if scalars:
            lines.append("")
        for k, v in tables.items():
            emit(v, f"{prefix}.{_key(k)}" if prefix else _key(k))

    def _inline(v: Mapping[str, Any]) -> bool:
        return (
            all(not isinstance(x, Mapping) for x in v.values())
            and len(v) <= 4
            and all(not isinstance(x, (list, tuple)) for x in v.values())
        )

    emit(data, "")
    return "\n".join(lines).strip() + "\n"


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Rows (key path, default, unit, doc) for the config reference docs."""
    rows = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        path = f"{prefix}.{f.name}" if prefix else f.name
        hints = get_type_hints(cls)
        tp = hints[f.name]
        inner = [a for a in get_args(tp) if dataclasses.is_dataclass(a)] or (
            [tp] if dataclasses.is_dataclass(tp) else []
        )
        if inner:
            rows.append((f"[{path}]", "", "", f.metadata.get("doc", "")))
            rows.extend(describe(typing.cast(type, inner[0]), path))
            continue
        if f.default is not dataclasses.MISSING:
            default = _toml_value(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = _toml_value(f.default_factory())
        else:
            default = "(required)"
        rows.append((path, default, f.metadata.get("unit", ""), f.metadata.get("doc", "")))
    return rows


def _toml_value(v: Any) -> str:
    if v is None:
        return "(omit)"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, dict):
        return "{}" if not v else str(v)
    return repr(v)
