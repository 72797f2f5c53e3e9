"""Typed configs: dataclasses are the schema, YAML presets the defaults, `--field value` the CLI.

Every stage declares one dataclass (nested dataclasses allowed). A preset is one YAML file per scale
(`presets/smoke.yaml`, `micro`, `small`, `paper`) holding one section per stage, so a scale is a single
place to read. Loading validates every key and type and names the offending field (`datagen.contexts[1].share`),
so a typo fails loudly before any work starts.
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


class ConfigError(ValueError):
    """A config value or key is wrong; the message names the field."""


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
    return path


def load_preset_section(name: str, section: str) -> dict:
    """The `section` mapping of preset `name` (a preset name or a path to a YAML file)."""
    path = preset_path(name)
    data = yaml.safe_load(path.read_text()) or {}
    if section not in data:
        raise ConfigError(f"preset {path.name} has no section {section!r}")
    return data[section] or {}


def build(cls: type, data: Any, where: str) -> Any:
    """Construct dataclass `cls` from plain data, checking keys and types recursively."""
    return _coerce(cls, data, where)


def load(cls: type, preset: str, section: str, overrides: dict[str, Any] | None = None) -> Any:
    data = load_preset_section(preset, section)
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value, section)
    return build(cls, data, section)


def to_dict(cfg: Any) -> Any:
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """`--a.b 3 --c [1,2]` -> {"a.b": 3, "c": [1, 2]}; values are parsed as YAML."""
    out: dict[str, Any] = {}
    it = iter(args)
    for token in it:
        if not token.startswith("--"):
            raise ConfigError(f"expected --field value, got {token!r}")
        key = token[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
        else:
            raw = next(it, None)
            if raw is None:
                raise ConfigError(f"--{key} needs a value")
        out[key.replace("-", "_")] = _scalar(yaml.safe_load(raw))
    return out


def _scalar(value: Any) -> Any:
    """YAML 1.1 reads `1e-3` as a string; on a command line it means a float."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _set_dotted(data: dict, dotted: str, value: Any, section: str) -> None:
    node: Any = data
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            try:
                index = int(part)
                node[index]
            except (ValueError, IndexError):
                raise ConfigError(f"{section}.{'.'.join(parts[:i + 1])}: no such list element") from None
            if last:
                node[index] = value
            else:
                node = node[index]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"{section}.{'.'.join(parts[:i])}: is a plain value ({node!r}), it has no field "
                                  f"{part!r}")
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})


def _coerce(tp: Any, value: Any, where: str) -> Any:
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = get_args(tp)[:1] or (Any,)
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_tp, val_tp = get_args(tp) or (Any, Any)
        return {_coerce(key_tp, k, where): _coerce(val_tp, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        hints = get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(fields)})")
        kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in value.items()}
        try:
            obj = tp(**kwargs)
        except TypeError as err:
            raise ConfigError(f"{where}: {err}") from None
        check = getattr(obj, "validate", None)
        if check is not None:
            check(where)
        return obj
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(tp, type):
        if isinstance(value, bool) and tp is not bool:
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp!r}")


__all__ = [
    "ConfigError", "PRESET_DIR", "build", "load", "load_preset_section", "parse_overrides",
    "preset_names", "preset_path", "to_dict",
]
