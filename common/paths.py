"""Where the lab's files are: the repository, its shipped checkpoints, the
workspace (``$LAB_HOME``, default the repository) and the benchmarks' results."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "pretrained"
RESULTS = ROOT / "benchmarks" / "results"


def home() -> Path:
    """The workspace: ``data/`` (collections) and ``runs/`` (training, experiments)
    live under it. Read at each call so a test's ``LAB_HOME`` takes effect."""
    return Path(os.environ.get("LAB_HOME", ROOT)).resolve()
