"""Typed dataclass configs: build from dicts / YAML / JSON / CLI flags, with clear errors.

Every stage has a ``@dataclass`` config whose fields carry ``metadata={"help": ...}``; the CLI
flags are generated from those fields (so ``--help`` documents every flag) and validation lives
in each config's ``__post_init__``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from shears.errors import ShearsError
from shears.inputs import read_text_file

T = TypeVar("T")

logger = logging.getLogger(__name__)


def field(
    default: Any = dataclasses.MISSING,
    help: str = "",  # noqa: A002
    aliases: tuple[str, ...] = (),
    **kwargs: Any,
) -> Any:
    """``dataclasses.field`` with a ``help`` text (used for ``--help`` and docs) and the former
    names of a renamed setting, oldest first (still accepted as config keys and flags, with a
    deprecation warning)."""
    meta = dict(kwargs.pop("metadata", {}) or {}, help=help)
    if aliases:
        meta["aliases"] = tuple(aliases)
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(
            default_factory=lambda: type(value)(value), metadata=meta, **kwargs
        )
    return dataclasses.field(default=default, metadata=meta, **kwargs)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Convert ``value`` to type ``tp`` or raise a ShearsError naming ``name``."""
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ShearsError(f"config key {name!r} must not be null")
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):  # a sub-config: its own errors
        return from_dict(tp, value, prefix=f"{name}.")
    try:
        if dataclasses.is_dataclass(tp):
            if isinstance(value, tp):
                return value
            raise TypeError
        if tp is Any:
            return value
        if origin in (list, tuple):
            if isinstance(value, str):
                value = [v for v in value.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise TypeError
            (inner,) = typing.get_args(tp)[:1] or (Any,)
            return [_coerce(f"{name}[{i}]", v, inner) for i, v in enumerate(value)]
        if origin is dict:
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in (
                "true",
                "1",
                "yes",
                "on",
                "false",
                "0",
                "no",
                "off",
            ):
                return value.lower() in ("true", "1", "yes", "on")
            raise TypeError
        if tp is int:
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if tp is str:
            if isinstance(value, (dict, list)):
                raise TypeError
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    tname = getattr(tp, "__name__", str(tp))
    raise ShearsError(f"config key {name!r} must be {tname}, got {value!r}")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types are ShearsErrors."""
    if not isinstance(data, dict):
        raise ShearsError(f"config {prefix or cls.__name__!r} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    data = rename_old_keys(cls, upgrade_layout(cls, data, prefix), prefix)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ShearsError(
            f"unknown config key {prefix + unknown[0]!r}; allowed: {', '.join(sorted(fields))}"
        )
    kwargs = {k: _coerce(prefix + k, v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


def upgrade_layout(cls: type, data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``data`` in the current layout of ``cls``: a config class whose settings moved between
    sections defines ``upgrade_layout(data, prefix) -> data`` (moving them, with a deprecation
    WARNING)."""
    upgrade = getattr(cls, "upgrade_layout", None)
    return upgrade(data, prefix) if upgrade is not None else data


def renamed(cls: type) -> dict[str, str]:
    """``{former name: current name}`` of the renamed fields of dataclass ``cls``."""
    return {old: f.name for f in dataclasses.fields(cls) for old in f.metadata.get("aliases", ())}


def original_names(cls: type) -> dict[str, str]:
    """``{current name: oldest name}`` of the renamed fields of dataclass ``cls``."""
    return {
        f.name: f.metadata["aliases"][0]
        for f in dataclasses.fields(cls)
        if f.metadata.get("aliases")
    }


# field metadata of a setting added after runs were recorded (absent from a record = its default)
ADDED = {"added": True}


def added_defaults(cls: type) -> dict[str, Any]:
    """``{name: default}`` of the fields of dataclass ``cls`` added after runs were recorded
    (``metadata={"added": True}``): at their default they count as absent, so a run recorded
    before them still digests and resumes the same."""
    return {
        f.name: f.default
        for f in dataclasses.fields(cls)
        if f.metadata.get("added") and f.default is not dataclasses.MISSING
    }


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def rename_old_keys(
    cls: type, data: dict[str, Any], prefix: str = "", flags: bool = False
) -> dict[str, Any]:
    """``data`` with the former names of renamed fields of ``cls`` replaced by the current ones,
    each with a deprecation WARNING (``flags``: named as command-line flags); a setting given
    under both names is a ShearsError."""
    old = renamed(cls)
    if not old.keys() & data.keys():
        return data
    out = dict(data)
    for name in [k for k in data if k in old]:
        new = old[name]
        given, use = (
            (_flag(name), _flag(new)) if flags else (f"{prefix + name!r}", f"{prefix + new!r}")
        )
        what = "" if flags else "config key "
        if new in out:
            raise ShearsError(f"{what}{given} and {use} are the same setting; give only {use}")
        logger.warning("%s%s is deprecated; use %s", what, given, use)
        out[new] = out.pop(name)
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> plain JSON/YAML-friendly dict."""
    return dataclasses.asdict(cfg)


def _one_line(exc: Exception) -> str:
    """A parser's message in one line (YAML errors span several, with a caret drawing)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if problem:
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{problem}{where}"
    return " ".join(str(exc).split())


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON mapping."""
    p = Path(path)
    if not p.is_file():
        raise ShearsError(f"config file {str(p)!r} does not exist")
    text = read_text_file(p, "config file")
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ShearsError(
            f"config file {str(p)!r} is not valid {p.suffix[1:] or 'YAML'}: {_one_line(exc)}"
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ShearsError(f"config file {str(p)!r} must hold a mapping at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict (copied)."""
    out = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise ShearsError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as exc:
            raise ShearsError(
                f"override {item!r}: the value is not valid YAML ({_one_line(exc)}); quote it"
            ) from exc
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ShearsError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return out


# ---------------------------------------------------------------------------- CLI bridge


def add_dataclass_args(
    parser: argparse.ArgumentParser, cls: type, exclude: tuple[str, ...] = (), dest: str = ""
) -> None:
    """Add one ``--flag`` per field of ``cls`` (``foo_bar`` -> ``--foo-bar``), help from metadata.

    Defaults are left as ``None`` (argparse.SUPPRESS) so that only flags the user gave override
    the dataclass defaults / a config file. A field holding a dataclass (a sub-config such as
    ``space``) adds its fields' flags, unprefixed, in a group of their own, stored as
    ``space.widths`` (``dest``: that prefix).
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude or not f.init:
            continue
        tp, _ = _unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(tp):
            group = parser.add_argument_group(f.name, f.metadata.get("help", ""))
            add_dataclass_args(group, tp, dest=f"{dest}{f.name}.")
            continue
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        help_text = f.metadata.get("help", "")
        help_text = (
            f"{help_text} (default: {default!r})" if help_text else f"(default: {default!r})"
        )
        kind: dict[str, Any] = {"default": argparse.SUPPRESS}
        if tp is bool:
            kind["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) in (list, tuple):
            kind["metavar"] = "A,B,..."
            help_text += " (comma-separated)"
        else:
            kind["metavar"] = tp.__name__.upper() if isinstance(tp, type) else "VALUE"
        parser.add_argument(_flag(f.name), dest=dest + f.name, help=help_text, **kind)
        for old in f.metadata.get("aliases", ()):  # former names: hidden, warned about
            parser.add_argument(_flag(old), dest=dest + old, help=argparse.SUPPRESS, **kind)


def add_config_args(
    parser: argparse.ArgumentParser,
    cls: type,
    exclude: tuple[str, ...] = (),
    config_help: str | None = None,
) -> None:
    """The options every stage command shares: ``--config FILE``, ``--set KEY=VALUE``
    (repeatable), then one flag per field of ``cls`` (:func:`add_dataclass_args`). Read back with
    :func:`config_from_args`: the file, updated by ``--set``, updated by the flags."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=config_help
        or f"YAML/JSON file of {cls.__name__} keys (as the flags below, with _); --set and "
        "flags given on the command line override it",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, section.key=value inside a section (repeatable; the "
        "value is read as YAML; flags override it)",
    )
    add_dataclass_args(parser, cls, exclude)


def config_from_args(
    cls: type[T], args: argparse.Namespace, base: dict[str, Any] | None = None
) -> T:
    """``cls`` from ``base`` (default: the ``--config`` file, if any) updated by ``--set`` and
    then by the flags the user gave (see :func:`add_config_args`)."""
    if base is None:
        base = load_config_file(args.config) if getattr(args, "config", None) else {}
    return dataclass_from_args(cls, args, apply_overrides(base, getattr(args, "overrides", [])))


def dataclass_from_args(
    cls: type[T], args: argparse.Namespace, base: dict[str, Any] | None = None
) -> T:
    """Build ``cls`` from a base dict (e.g. a config file) updated by the flags the user gave
    (those of a sub-config, ``space.widths``, update its section)."""
    names = {f.name for f in dataclasses.fields(cls) if f.init} | renamed(cls).keys()
    given = {k: v for k, v in vars(args).items() if k in names}
    data = rename_old_keys(cls, upgrade_layout(cls, dict(base or {})))
    data.update(rename_old_keys(cls, given, flags=True))
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in names or not dataclasses.is_dataclass(_unwrap_optional(hints[f.name])[0]):
            continue
        section = {} if data.get(f.name) is None else data[f.name]  # empty: the defaults
        flags = {
            k[len(f.name) + 1 :]: v for k, v in vars(args).items() if k.startswith(f.name + ".")
        }
        if isinstance(section, dict) and (flags or f.name in data):
            data[f.name] = {**section, **flags}
    return from_dict(cls, data)


# ---------------------------------------------------------------------------- recorded paths


def local_spec_path(spec: str | None) -> str | None:
    """The absolute path (``~`` expanded, ``..`` and symlinks resolved) of a model / data spec
    that names an existing local path; ``None`` for a hub id, a named default (``smollm2-135m``),
    a prefixed source (``gym:...``) or a missing path."""
    if not spec:
        return None
    from shears.models import NAMED_DEFAULTS

    if spec in NAMED_DEFAULTS:
        return None
    try:
        p = Path(spec).expanduser()
        return str(p.resolve()) if p.exists() else None
    except (OSError, ValueError, RuntimeError):  # a name too long, a NUL byte, no home folder
        return None


def absolute_spec(spec: str | None, *, local: bool = False) -> str | None:
    """``spec`` as an absolute path when it names a local path, else unchanged.

    ``local=True``: ``spec`` is always a path (e.g. an output folder that need not exist yet).
    """
    if local and spec:
        return str(Path(spec).expanduser().resolve())
    return local_spec_path(spec) or spec


def same_spec(a: str | None, b: str | None) -> bool:
    """Whether two specs name the same input: equal, or the same path once made absolute."""
    return a == b or (
        isinstance(a, str) and isinstance(b, str) and absolute_spec(a) == absolute_spec(b)
    )


def recorded_path(given: str | None, absolute: str | None) -> str | None:
    """The path to use for an input recorded both as given and as absolute: the absolute one when
    it still exists (so a command works from any folder), else the given one."""
    if absolute and local_spec_path(absolute):
        return absolute
    return given
