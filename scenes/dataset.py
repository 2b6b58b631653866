"""The dataset format: a JSON manifest plus array shards; its writer and reader.

A dataset is a folder::

    manifest.json        what was collected and which shards are complete
    shard-00000/         episodes [0, K) (K = episodes_per_shard)
        meta.json        rows, episodes, and each file's shape, dtype, bytes, crc32
        state.npy        (R, D) float32   the state observation, row by row
        pixels.npy       (R, 64, 64, 3) uint8   (only when collected with pixels)
        actions.npy      (R, A) float32   the action taken at that row; zeros on
                                          the last row of each episode (none taken)
        signals.npy      (R, S) float32   info["signals"], columns as in the manifest
        success.npy      (R,) bool        info["is_success"]
        episodes.npy     (E, 2) int64     [first row, number of rows] of each episode
        goals.npy        (E, G) float32   each episode's goal (the task signals)
    shard-00001/ ...

Rows of one episode are consecutive: observation t, then the action taken
from it. An episode of L steps has L + 1 rows. Files are ``.npy`` written by
numpy and read with ``allow_pickle=False``: nothing is ever unpickled.

A shard is written into ``shard-XXXXX.tmp-<pid>/`` and renamed into place, so
a shard folder under its final name is complete; a kill leaves only a
``.tmp`` folder, which the next run removes and redoes. Every shard carries
its own ``meta.json``, so a shard finished but not yet listed when the
collector died is checked and adopted on resume. The reader reads only
shards listed in the manifest and checks every file's size (and, by
default, its CRC-32) against the listing before use.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import LabError
from common.files import read_versioned_json, write_json_atomic

FORMAT = "lab-dataset"
VERSION = 1
ARRAYS = ("state", "pixels", "actions", "signals", "success", "episodes", "goals")
PER_ROW = ("state", "pixels", "actions", "signals", "success")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def _file_crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc


def write_shard(root: Path, index: int, arrays: dict[str, np.ndarray], first_episode: int) -> dict:
    """Write one shard atomically; return its meta (also saved as meta.json)."""
    final = root / shard_name(index)
    tmp = root / f"{shard_name(index)}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    files = {}
    for name, arr in arrays.items():
        path = tmp / f"{name}.npy"
        np.save(path, np.ascontiguousarray(arr), allow_pickle=False)
        files[name] = {
            "shape": list(arr.shape),
            "dtype": str(arr.dtype),
            "bytes": path.stat().st_size,
            "crc32": _file_crc(path),
        }
    meta = {
        "name": final.name,
        "rows": int(arrays["state"].shape[0]),
        "first_episode": int(first_episode),
        "n_episodes": int(arrays["episodes"].shape[0]),
        "files": files,
    }
    write_json_atomic(tmp / "meta.json", meta)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    return meta


def check_shard(root: Path, meta: dict, crc: bool = True) -> str | None:
    """Why the shard on disk does not match ``meta``, or None when it does."""
    folder = root / meta["name"]
    if not folder.is_dir():
        return "its folder is missing"
    for name, f in meta["files"].items():
        path = folder / f"{name}.npy"
        if not path.is_file():
            return f"{name}.npy is missing"
        if path.stat().st_size != f["bytes"]:
            return f"{name}.npy has {path.stat().st_size} bytes, not {f['bytes']} (cut short?)"
        if crc and _file_crc(path) != f["crc32"]:
            return f"{name}.npy does not match its checksum"
    return None


def read_shard_meta(folder: Path) -> dict | None:
    """A shard folder's own meta.json, or None if unreadable."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("name") != folder.name:
        return None
    return meta


def load_manifest(root: Path) -> dict:
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise LabError(
            f"{root} is not a dataset: it has no manifest.json (make one with ./lab collect)"
        )
    manifest = read_versioned_json(
        path, FORMAT, VERSION, "lab dataset manifest", "collect the data again"
    )
    return manifest


@dataclass
class Episodes:
    """A whole dataset in memory: per-row arrays plus the episode table.

    ``arrays[k]`` holds rows of every episode one after another; ``episodes``
    is ``(E, 2)`` int64 of [first row, rows] in those arrays.
    """

    arrays: dict[str, np.ndarray]
    episodes: np.ndarray
    goals: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.episodes[:, 1].sum())


class Dataset:
    """Reads a collected dataset; never touches a shard the manifest does not list."""

    def __init__(self, root: str | Path, verify: bool = True) -> None:
        self.root = Path(root)
        self.manifest = load_manifest(self.root)
        self.shards = [self.manifest["shards"][k] for k in sorted(self.manifest["shards"])]
        if not self.shards:
            raise LabError(f"{self.root} holds no complete shard yet; run ./lab collect")
        for meta in self.shards:
            problem = check_shard(self.root, meta, crc=verify)
            if problem:
                raise LabError(
                    f"{self.root}/{meta['name']} is damaged: {problem}. Run the same "
                    "./lab collect command again: it checks and redoes damaged shards."
                )

    scene = property(lambda self: self.manifest["scene"])
    pixels = property(lambda self: bool(self.manifest["pixels"]))
    state_names = property(lambda self: list(self.manifest["state_names"]))
    signal_names = property(lambda self: list(self.manifest["signal_names"]))
    action_dim = property(lambda self: int(self.manifest["action_dim"]))

    @property
    def n_episodes(self) -> int:
        return sum(m["n_episodes"] for m in self.shards)

    def load(self, keys: tuple[str, ...] = ("state", "actions", "signals", "pixels")) -> Episodes:
        """Every listed shard, concatenated in memory (``pixels`` only if collected)."""
        keys = tuple(k for k in keys if k != "pixels" or self.pixels)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in (*keys, "episodes", "goals")}
        offset = 0
        for meta in self.shards:
            folder = self.root / meta["name"]
            for k in parts:
                arr = np.load(folder / f"{k}.npy", allow_pickle=False)
                if k == "episodes":
                    arr = arr + np.array([offset, 0])
                parts[k].append(arr)
            offset += meta["rows"]
        arrays = {k: np.concatenate(parts[k]) for k in keys}
        return Episodes(arrays, np.concatenate(parts["episodes"]), np.concatenate(parts["goals"]))


def window_starts(
    episodes: np.ndarray, horizon: int, which: np.ndarray | None = None
) -> np.ndarray:
    """Rows t where observations t..t+H and actions t..t+H-1 lie in one episode.

    episodes: (E, 2) [first row, rows]; which: indices of the episodes to use
    (a train or validation split), all by default. Returns (W,) int64.
    """
    eps = episodes if which is None else episodes[which]
    counts = np.maximum(eps[:, 1] - horizon, 0)  # valid starts per episode
    starts = np.repeat(eps[:, 0], counts)
    # Within each episode, offsets 0..count-1: a global arange minus each
    # episode's first position in the output.
    firsts = np.repeat(np.cumsum(counts) - counts, counts)
    return starts + (np.arange(counts.sum()) - firsts)


def gather_windows(data: Episodes, starts: np.ndarray, horizon: int) -> dict[str, np.ndarray]:
    """Windows of H steps: observations (B, H+1, ...), actions (B, H, A).

    Every per-row array comes back as (B, H+1, ...) except ``actions``,
    which is (B, H, A): the action after the last observation is not part
    of the window.
    """
    rows = starts[:, None] + np.arange(horizon + 1)  # (B, H+1)
    out = {k: v[rows] for k, v in data.arrays.items() if k != "actions"}
    if "actions" in data.arrays:
        out["actions"] = data.arrays["actions"][rows[:, :-1]]
    return out
