"""A `Config` from text: the --preset/--config/--set flags every script shares, `--set
section.field=value` overrides parsed by each field's declared type, and config.json files
and checkpoint configs checked like user input.

Errors are `ConfigError`s (a `UserError`: exit code 2) that name the field (and the file).
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

from config import PRESETS, Config, ConfigError, validate


def config_from_dict(data: dict) -> Config:
    """Inverse of `Config.to_dict`; unknown keys, wrong types and out-of-range model sizes
    raise ConfigError (a checkpoint's stored config is checked like user input)."""
    cfg = _from_dict(Config, data, "")
    validate(cfg)
    return cfg


def build_config(preset: str = "paper", overrides: tuple[str, ...] | list[str] = (),
                 config_file: str | Path | None = None) -> Config:
    """Preset (or a saved config.json) plus `section.field=value` overrides, applied in order."""
    if config_file is not None:
        cfg = load_config_file(config_file)
    elif preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    else:
        cfg = PRESETS[preset]()
    for item in overrides:
        apply_override(cfg, item)
    validate(cfg)
    return cfg


def load_config_file(path: str | Path) -> Config:
    """A saved config.json (a run folder stands for its config.json), with errors that name it."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--config {path}: not a readable JSON file ({exc})") from None
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"--config {path}: {exc}") from None


def apply_override(cfg: Config, item: str) -> None:
    """Set one field from 'section.field=value'; the text is parsed by the field's declared type
    (`data.root=2024` is the string '2024', `train.lr=abc` an error naming train.lr).
    """
    key, sep, text = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2:
        raise ConfigError(f"--set {item!r} must look like section.field=value")
    section_name, field_name = parts
    section = getattr(cfg, section_name, None)
    if section is None or not dataclasses.is_dataclass(section):
        raise ConfigError(f"--set {item!r}: no section {section_name!r}; "
                          f"sections are {[f.name for f in dataclasses.fields(cfg)]}")
    hints = _field_types(type(section))
    if field_name not in hints:
        raise ConfigError(f"--set {item!r}: section {section_name!r} has no field "
                          f"{field_name!r}; fields are {sorted(hints)}")
    where = f"{section_name}.{field_name}"
    try:
        value = _convert(text.strip(), hints[field_name], from_text=True)
    except _Mismatch:
        raise ConfigError(f"--set {where}={text.strip()}: {where} expects "
                          f"{_describe(hints[field_name])}, got {text.strip()!r}") from None
    setattr(section, field_name, value)


class _Mismatch(Exception):
    """A value does not fit a type (turned into a ConfigError that names the field)."""


_TRUE, _FALSE, _NONE = ("1", "true", "yes", "on"), ("0", "false", "no", "off"), ("none", "null")


def _field_types(cls) -> dict[str, Any]:
    """{field name: resolved type hint} of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _optional_inner(tp):
    """X for Optional[X], else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def _convert(value: Any, tp, from_text: bool = False) -> Any:
    """`value` (command-line text, or a JSON value) as type `tp`; raises _Mismatch."""
    inner = _optional_inner(tp)
    if inner is not None:
        if value is None or (from_text and isinstance(value, str) and value.lower() in _NONE):
            return None
        return _convert(value, inner, from_text)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_text and isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise _Mismatch
    if tp in (int, float):
        if isinstance(value, str) and from_text:
            try:
                return tp(value)
            except ValueError:
                raise _Mismatch from None
        # An int field takes ints only; a float field takes ints and floats (never bools).
        allowed = int if tp is int else (int, float)
        if isinstance(value, allowed) and not isinstance(value, bool):
            return tp(value)
        raise _Mismatch
    if typing.get_origin(tp) is tuple:
        if isinstance(value, str) and from_text:
            value = _tuple_text(value)
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], from_text) for v in value)
        if len(args) != len(value):
            raise _Mismatch
        return tuple(_convert(v, a, from_text) for v, a in zip(value, args))
    raise TypeError(f"config field type {tp!r} is not supported")  # a bug in this file


def _tuple_text(text: str) -> list:
    """'(12,2,1)', '[12, 2, 1]', '12,2,1', '0.6' or '()' -> a list of items (numbers as text,
    nested tuples as lists), so each item is then parsed by its own declared type."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = [v.strip() for v in text.strip("()[] ").split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        value = [value]

    def as_text(v):
        if isinstance(v, (list, tuple)):
            return [as_text(x) for x in v]
        return v if isinstance(v, str) else repr(v)
    return [as_text(v) for v in value]


def _describe(tp) -> str:
    inner = _optional_inner(tp)
    if inner is not None:
        return f"{_describe(inner)} or none"
    names = {str: "a string", bool: "true or false", int: "an integer", float: "a number (e.g. 1e-4)"}
    if tp in names:
        return names[tp]
    args = typing.get_args(tp)
    plural = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
    if len(args) == 2 and args[1] is Ellipsis:
        return f"a tuple of {plural.get(args[0], 'tuples ' + _describe(args[0]).removeprefix('a tuple '))}"
    if len(set(args)) == 1 and args[0] in plural:
        return f"a tuple of {len(args)} {plural[args[0]]}"
    return f"a tuple ({', '.join(_describe(a) for a in args)})"


# Fields the schema no longer has, with the value that left them off and where the experiment
# is described: a stored config holding one at that value (weights/standard.pth holds
# online.ensemble_labels=false, as does every run saved before it went) loads as if it were
# absent; any other value is refused.
RETIRED = {"online.ensemble_labels": (False, "docs/online_update.md#what-made-the-difference-on-gusty-rain")}


def _without_retired(data: dict, where: str) -> dict:
    kept = dict(data)
    for name, value in data.items():
        key = f"{where.lstrip('.')}.{name}"
        if key in RETIRED:
            off, doc = RETIRED[key]
            if value != off:
                raise ConfigError(f"config.{key}: {value!r}, but the option was removed ({doc})")
            del kept[name]
    return kept


def _from_dict(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"config{where}: expected an object, got {type(data).__name__}")
    data = _without_retired(data, where)
    hints = _field_types(cls)
    unknown = set(data) - set(hints)
    if unknown:
        raise ConfigError(f"config{where}: unknown keys {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _from_dict(tp, value, f"{where}.{name}")
            continue
        try:
            kwargs[name] = _convert(value, tp)
        except _Mismatch:
            raise ConfigError(f"config{where}.{name}: expected {_describe(tp)}, got {value!r}") from None
    return cls(**kwargs)


def add_config_args(parser: argparse.ArgumentParser, default_preset: str = "paper") -> None:
    """The flags every script shares: --preset or --config, and repeated --set overrides.

    --preset defaults to None so a script can tell an explicit choice from the default;
    `config_from_args` uses `default_preset` then."""
    parser.set_defaults(default_preset=default_preset)
    parser.add_argument("--preset", default=None, choices=sorted(PRESETS),
                        help=f"named configuration to start from (default: {default_preset})")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="start from a saved config.json (or a run folder's) instead of a "
                             "preset; --set applies on top")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE",
                        help="override one config field, e.g. --set train.lr=1e-4 (repeatable)")


def preset_of(args: argparse.Namespace) -> str:
    """The --preset given, else the script's default; refuses --preset together with --config."""
    if args.preset is not None and getattr(args, "config", None) is not None:
        raise ConfigError("give --preset or --config, not both (--config is a full configuration)")
    return args.preset or args.default_preset


def config_from_args(args: argparse.Namespace) -> Config:
    return build_config(preset_of(args), args.overrides, getattr(args, "config", None))
