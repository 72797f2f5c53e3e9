"""Typed configs: dataclasses are the schema, YAML presets the defaults, `--field value` the CLI.

Every stage declares one dataclass (nested dataclasses allowed). A preset is one YAML file per scale
(`presets/smoke.yaml`, `micro`, `small`, `paper`) holding one section per stage, so a scale is a single
place to read. Loading validates every key and type and names the offending field (`datagen.contexts[1].share`),
so a typo fails loudly before any work starts.

The dataclasses are also the CLI's documentation: `config_help` lists every field (dotted path, type, the chosen
preset's value) with its meaning taken from the `# comment` on the field's line (or the comment block just above
it). Comments are this project's existing way of saying what a field means, so the help needs nothing written twice.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
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


def config_help(argv: list[str], sections: list[tuple[str, type]]) -> str:
    """The typed fields of a stage's CLI, for argparse's epilog: every (nested) field of each preset section with its
    type, the value of the preset named in `argv` (default smoke) and its meaning. Fields of the first section are
    plain `--field`; those of any further section are `--section.field` (as `lab eval`'s `--ladder.edge.lo`)."""
    preset = _preset_of(argv)
    lines = []
    for index, (section, cls) in enumerate(sections):
        flag = "" if index == 0 else f"{section}."
        try:
            values, source = to_dict(load(cls, preset, section)), f"preset {preset!r}"
        except ConfigError as err:
            values, source = None, f"preset {preset!r} does not load: {err}"
        lines.append(f"config fields of section {section!r} ({source}); set any with --FIELD VALUE (YAML):")
        for path, tp, value, meaning in _leaf_fields(cls, values, section):
            shown = "(required)" if value is dataclasses.MISSING else _flow(value)
            lines.append(f"  --{flag}{path} {_type_name(tp)} = {shown}")
            if meaning:
                lines.extend(textwrap.wrap(meaning, 112, initial_indent="      ", subsequent_indent="      "))
        lines.append("")
    return "\n".join(lines)


def help_formatter(prog: str) -> argparse.HelpFormatter:
    """Keeps the epilog's line breaks (argparse would reflow the field list into one paragraph)."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _preset_of(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--preset", default="smoke")
    return parser.parse_known_args(argv)[0].preset


def _leaf_fields(cls: type, values: dict | None, prefix: str):
    """(dotted path without the section, type, value, meaning) of every field, nested dataclasses flattened."""
    hints, meanings = get_type_hints(cls), field_meanings(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if values is not None:
            value = values.get(f.name, dataclasses.MISSING)
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = to_dict(f.default_factory())
        else:
            value = dataclasses.MISSING
        if dataclasses.is_dataclass(tp):
            nested = value if isinstance(value, dict) else None
            for path, sub_tp, sub_value, meaning in _leaf_fields(tp, nested, f.name):
                yield f"{f.name}.{path}", sub_tp, sub_value, meaning
        else:
            yield f.name, tp, value, meanings.get(f.name, "")


@functools.cache
def field_meanings(cls: type) -> dict[str, str]:
    """field -> the `# comment` on its line(s), else the comment lines directly above it (inherited fields too)."""
    meanings: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # no source at hand (e.g. a zipped install): no meanings, still the fields
            continue
        comments = {tok.start[0]: tok.string.lstrip("#").strip()
                    for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
        lines = source.splitlines()
        for node in ast.parse(source).body[0].body:
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            trailing = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
            above, n = [], node.lineno - 1
            while n >= 1 and n in comments and lines[n - 1].lstrip().startswith("#"):
                above.insert(0, comments[n])
                n -= 1
            meaning = " ".join(trailing or above)
            if meaning or node.target.id not in meanings:  # a subclass that only changes a default keeps the meaning
                meanings[node.target.id] = meaning
    return meanings


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "{" + ",".join(map(str, get_args(tp))) + "}"
    if origin in (Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _type_name(a) for a in get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in get_args(tp))}]"
    return getattr(tp, "__name__", str(tp))


def _flow(value: Any) -> str:
    """A value as it would be typed on the command line (YAML flow style)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip().removesuffix("\n...")


__all__ = [
    "ConfigError", "PRESET_DIR", "build", "config_help", "field_meanings", "help_formatter", "load",
    "load_preset_section", "parse_overrides", "preset_names", "preset_path", "to_dict",
]
