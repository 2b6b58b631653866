"""The one place a ``torch.device`` is chosen; entry points call it, library code
takes the device it is given."""

from __future__ import annotations

import torch

from common.errors import LabError


def choose_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else the CPU; ``cuda`` without one raises."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LabError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)
