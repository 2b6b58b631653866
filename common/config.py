"""Command lines generated from config dataclasses (CleanRL-style, no extra deps).

Each field becomes ``--field-name`` with its default, its type and the
``help`` in its metadata; tuples take several values; booleans take
``--flag`` / ``--no-flag``. ``--help`` lists them all.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def build_parser(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("cli") is False:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        # argparse formats help with %: a plain "10%" in a text would break --help
        text = f.metadata.get("help", "").replace("%", "%%")
        kw: dict[str, Any] = {"help": text, "dest": f.name}
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if f.metadata.get("required"):
            kw["required"] = True
        else:
            kw["default"] = default
        origin = typing.get_origin(kind)
        if kind is bool:
            kw.pop("choices", None)
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif origin is tuple:  # tuple[T, T]: that many values; tuple[T, ...]: any number
            args = typing.get_args(kind)
            nargs = "*" if args[-1] is Ellipsis else len(args)
            parser.add_argument(flag, type=args[0], nargs=nargs, metavar="V", **kw)
        else:
            base = _base_type(kind)
            parser.add_argument(flag, type=base, **kw)
    return parser


def parse_config(cls: type[T], argv: list[str] | None, prog: str, description: str) -> T:
    args = build_parser(cls, prog, description).parse_args(argv)
    values = vars(args)
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if typing.get_origin(hints[name]) is tuple and value is not None:
            values[name] = tuple(value)
    return cls(**values)


def changed_flags(cfg, skip: tuple[str, ...] = ()) -> list[str]:
    """The command-line flags that give ``cfg`` again: each field (not in ``skip``) whose
    value is not the default, spelt as ``build_parser`` reads it (``--no-flag`` for a
    false boolean, a tuple's values one after another)."""
    out = []
    for f in dataclasses.fields(cfg):
        if not f.init or f.name in skip or f.metadata.get("cli") is False:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        value = getattr(cfg, f.name)
        if value == default:
            continue
        flag = f.name.replace("_", "-")
        if isinstance(value, bool):
            out.append(f"--{flag}" if value else f"--no-{flag}")
        elif isinstance(value, tuple):
            out.append(" ".join([f"--{flag}", *map(str, value)]))
        else:
            out.append(f"--{flag} {value}")
    return out


def _base_type(kind):
    """``int | None`` -> ``int``; plain types pass through."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if args else kind
