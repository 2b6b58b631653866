"""Measured figures as data: each benchmark's last result, in
``benchmarks/results/<name>.json``.

A benchmark ends with ``write(name, figures, command)``: the object it prints as its
last JSON line, the command that reproduces it, the date and the machine it ran on.
The pages, the lessons and the README quote these files (``read``) instead of
keeping figures in code, so a figure is changed in one place, by measuring it again.
Only the reference run (every setting that changes the figures at its default) writes
``<name>.json``; a short or narrowed one (``--quick``, fewer episodes, one scene) writes
``<name>-partial.json`` and leaves the reference figures be (``name_for``).

``$LAB_RESULTS`` moves the folder (a test that runs a benchmark keeps the
repository's figures untouched).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path

from common.errors import LabError
from common.files import write_json_atomic
from common.paths import RESULTS

KEYS = ("name", "figures", "command", "date", "machine")  # what every results file holds


def folder() -> Path:
    """Where results are written and read: ``$LAB_RESULTS``, else benchmarks/results."""
    return Path(os.environ.get("LAB_RESULTS") or RESULTS)


def path(name: str) -> Path:
    return folder() / f"{name}.json"


def command(name: str, argv: list[str] | None = None) -> str:
    """How this benchmark was started, as ``./lab bench`` takes it."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["./lab", "bench", name, *map(shlex.quote, args)])


def machine(device: str | None = None) -> dict:
    """What ran it: cores, torch's device and the CPU model, in words and apart."""
    cpu = _cpu_model()
    cores = os.cpu_count() or 0
    if device is None:
        device = "cpu"
    return {
        "description": f"{cores}-core {cpu}, torch on {device}",
        "cores": cores,
        "device": str(device),
        "cpu": cpu,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def write(name: str, figures, command: str, device: str | None = None) -> Path:
    """Save a benchmark's ``figures`` (what it prints as its last JSON line) as
    ``<name>.json``, atomically, with ``command``, today's date and the machine."""
    record = {
        "name": name,
        "figures": figures,
        "command": command,
        "date": datetime.date.today().isoformat(),
        "machine": machine(device),
    }
    out = path(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, record)
    return out


def name_for(bench: str, parser, args, ignore: tuple[str, ...] = ("device",)) -> str:
    """``bench`` when ``args`` hold ``parser``'s defaults (but for ``ignore``: settings
    that do not change the figures), else ``<bench>-partial``."""
    defaults = vars(parser.parse_args([]))
    same = all(v == defaults.get(k) for k, v in vars(args).items() if k not in ignore)
    return bench if same else f"{bench}-partial"


def save(
    bench: str,
    figures,
    parser,
    args,
    device=None,
    variant: str = "",
    ignore: tuple[str, ...] = ("device",),
) -> Path:
    """What a benchmark calls last: ``write`` its figures under ``name_for`` (with
    ``-<variant>`` for another mode of the same benchmark), with the command it ran."""
    name = f"{bench}-{variant}" if variant else bench
    return write(
        name_for(name, parser, args, ignore),
        figures,
        command(bench),
        None if device is None else str(device),
    )


def read(name: str) -> dict:
    """The results file of benchmark ``name`` (``KEYS``); a missing or damaged one raises
    ``LabError`` saying how to measure it again."""
    p = path(name)
    bench = name.split("-")[0]
    remedy = f"measure it with ./lab bench {bench}"
    try:
        text = p.read_text()
    except FileNotFoundError as e:
        raise LabError(f"no measured figures for {name} ({p} is missing): {remedy}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise LabError(f"cannot read {p} ({e}): {remedy}") from e
    try:
        record = json.loads(text)
    except ValueError as e:
        raise LabError(f"{p} is not valid JSON ({e}): {remedy}") from e
    missing = [k for k in KEYS if not isinstance(record, dict) or k not in record]
    if missing:
        raise LabError(f"{p} lacks {', '.join(missing)}: {remedy}")
    return record


def figures(name: str):
    """Just the figures of ``read(name)``."""
    return read(name)["figures"]
