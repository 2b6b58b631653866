"""Small file helpers every part uses: atomic JSON writes, versioned JSON reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

from scenes.errors import LabError


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_versioned_json(path: Path, fmt: str, version: int, what: str, remedy: str) -> dict:
    """A JSON object whose ``format`` is ``fmt`` and ``version`` is ``version``.

    Anything else (unreadable, not JSON, another format, another version)
    raises ``LabError`` naming ``what`` the file should be and the ``remedy``.
    """
    try:
        obj = json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise LabError(f"{path} is not valid JSON ({e}): not a {what}; {remedy}") from e
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise LabError(f"{path} is not a {what}")
    if obj.get("version") != version:
        raise LabError(
            f"{path} has format version {obj.get('version')!r}; this lab reads version "
            f"{version}: {remedy}"
        )
    return obj
