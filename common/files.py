"""Small file helpers every part uses: atomic JSON and safetensors writes, versioned JSON
reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

from common.errors import LabError


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_safetensors_atomic(path: Path, tensors: dict) -> None:
    """Write ``tensors`` (name -> CPU tensor) as safetensors to a temp file in the same
    folder, then rename over: a reader sees the old file or the new one, never half."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


def read_versioned_json(path: Path, fmt: str, version: int, what: str, remedy: str) -> dict:
    """The JSON object in the file at ``path`` (``parse_versioned_json``); a file that
    cannot be read or is not text raises ``LabError`` too."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise LabError(f"cannot read the {what} {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise LabError(f"{path} is not text ({e}): not a {what}; {remedy}") from e
    return parse_versioned_json(text, fmt, version, what, remedy, source=str(path))


def parse_versioned_json(
    text: str, fmt: str, version: int, what: str, remedy: str, source: str = "the file"
) -> dict:
    """A JSON object whose ``format`` is ``fmt`` and ``version`` is ``version``.

    Anything else (not JSON, another format, another version) raises ``LabError``
    naming ``source``, ``what`` it should be and the ``remedy``.
    """
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise LabError(f"{source} is not valid JSON ({e}): not a {what}; {remedy}") from e
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise LabError(f"{source} is not a {what} (its 'format' should be {fmt!r})")
    if obj.get("version") != version:
        raise LabError(
            f"{source} has format version {obj.get('version')!r}; this lab reads version "
            f"{version}: {remedy}"
        )
    return obj
