"""Collect exploration data in parallel processes, resumably.

    ./lab collect --scene reach --episodes 500 --workers 2 --out data/reach

Episode ``i`` is seeded from ``(seed, i)`` alone, so the data do not depend
on how many workers ran or how often the run was stopped: a resumed run
writes the same shards an uninterrupted one would. Work is split into shards
of ``episodes_per_shard`` episodes; each worker process owns one scene (one
PyBullet client) and writes whole shards atomically (see ``dataset.py``).
Ctrl-C or a kill loses at most the shards in flight; running the same
command again checks what is on disk, redoes what is damaged and goes on.

PyBullet clients must not cross threads, so each worker process builds its
own scene; the collector itself never connects one.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

import scenes
from common.config import parse_config
from common.errors import LabError
from common.files import write_json_atomic
from scenes import dataset as ds
from scenes.exploration import ExplorationConfig, ExplorationPolicy

log = logging.getLogger(__name__)


@dataclass
class CollectConfig:
    """What to collect and where."""

    scene: str = field(
        default="reach",
        metadata={
            "help": "scene: reach, wall, push, kitchen or a Bullet-Safety-Gym task "
            "(ballcircle, SafetyCarRun-v0, ...)"
        },
    )
    out: str = field(default="", metadata={"help": "output folder (default data/<scene>)"})
    episodes: int = field(default=500, metadata={"help": "number of episodes in all"})
    steps: int = field(
        default=0, metadata={"help": "steps per episode (0: the scene's time limit)"}
    )
    workers: int = field(default=0, metadata={"help": "worker processes (0: one per CPU core)"})
    pixels: bool = field(default=True, metadata={"help": "render 64x64 pixel observations"})
    episodes_per_shard: int = field(
        default=10, metadata={"help": "episodes per shard: the unit of resumption"}
    )
    seed: int = field(default=0, metadata={"help": "base seed; episode i uses (seed, i)"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    exploration: ExplorationConfig = field(
        default_factory=ExplorationConfig, metadata={"cli": False}
    )

    def resolved(self) -> CollectConfig:
        key = scenes.scene_key(self.scene)
        cls = scenes.scene_class(key)
        if self.episodes < 1 or self.episodes_per_shard < 1:
            raise LabError("--episodes and --episodes-per-shard must be at least 1")
        if self.steps < 0 or self.workers < 0:
            raise LabError("--steps and --workers must not be negative")
        return CollectConfig(
            scene=key,
            out=self.out or f"data/{key}",
            episodes=self.episodes,
            steps=self.steps or cls.MAX_EPISODE_STEPS,
            workers=self.workers or os.cpu_count() or 1,
            pixels=self.pixels,
            episodes_per_shard=self.episodes_per_shard,
            seed=self.seed,
            progress=self.progress,
            exploration=self.exploration,
        )


# Settings that fix the content of every shard: a resumed run must match them.
FIXED = (
    "scene",
    "env_id",  # its version: a scene changed in what it shows or does is a new one
    "pixels",
    "episode_steps",
    "episodes_per_shard",
    "seed",
    "exploration",
    "explore_resets",
)
ASSUMED = {"explore_resets": [{}]}  # what a manifest written before the key was added means


def new_manifest(cfg: CollectConfig) -> dict:
    cls = scenes.scene_class(cfg.scene)
    return {
        "format": ds.FORMAT,
        "version": ds.VERSION,
        "scene": cfg.scene,
        "env_id": scenes.env_id(cfg.scene),
        "pixels": cfg.pixels,
        "image_size": 64,
        "episodes": cfg.episodes,
        "episode_steps": cfg.steps,
        "episodes_per_shard": cfg.episodes_per_shard,
        "seed": cfg.seed,
        "exploration": cfg.exploration.to_dict(),
        "explore_resets": [dict(o) for o in cls.EXPLORE_RESETS],
        "control_dt": cls.CONTROL_DT,
        "action_dim": cls.ACTION_DIM,
        "state_names": [s.name for s in cls.STATE],
        "state_units": [s.unit for s in cls.STATE],
        "signal_names": [s.name for s in cls.SIGNALS],
        "signal_units": [s.unit for s in cls.SIGNALS],
        "goal_signals": [s.name for s in cls.SIGNALS if s.goal],
        "task_signals": list(cls.TASK_SIGNALS),
        "shards": {},
        "complete": False,
    }


def episode_seed(seed: int, episode: int) -> int:
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


def run_episodes(
    scene,
    policy_cfg: ExplorationConfig,
    seed: int,
    first: int,
    count: int,
    steps: int,
    on_episode=None,
) -> dict[str, np.ndarray]:
    """Run episodes ``first .. first+count-1`` on ``scene``; return shard arrays."""
    n_sig = len(scene.signal_names)
    cap = count * (steps + 1)
    out = {
        "state": np.zeros((cap, len(scene.state_names)), np.float32),
        "actions": np.zeros((cap, scene.ACTION_DIM), np.float32),
        "signals": np.zeros((cap, n_sig), np.float32),
        "success": np.zeros(cap, bool),
    }
    if scene.pixels:
        out["pixels"] = np.zeros((cap, 64, 64, 3), np.uint8)
    episodes = np.zeros((count, 2), np.int64)
    goals = np.zeros((count, len(scene.TASK_SIGNALS)), np.float32)
    row = 0
    for e in range(count):
        s = episode_seed(seed, first + e)
        variant = scene.EXPLORE_RESETS[(first + e) % len(scene.EXPLORE_RESETS)]
        obs, info = scene.reset(seed=s, options={**variant, "goal_obs": False})
        policy = ExplorationPolicy(
            policy_cfg, scene.ACTION_DIM, np.random.default_rng(s), scripted=scene.SCRIPTED
        )
        policy.begin_episode(steps)
        episodes[e, 0], goals[e] = row, scene.goal
        for t in range(steps + 1):
            out["state"][row] = obs["state"]
            if scene.pixels:
                out["pixels"][row] = obs["pixels"]
            out["signals"][row] = list(info["signals"].values())  # in SIGNALS order
            out["success"][row] = info["is_success"]
            row += 1
            if t == steps:
                break
            action = policy.act(scene, info["is_success"])
            out["actions"][row - 1] = action
            obs, _, _terminated, _, info = scene.step(action)
            if "error" in info:
                log.warning("episode %d ended early: %s", first + e, info["error"])
                break
            if _terminated and scene.FOREIGN:  # the task ended it (an Ant fell, Gather done)
                break
        episodes[e, 1] = row - episodes[e, 0]
        if on_episode:
            on_episode()
    arrays = {k: v[:row] for k, v in out.items()}
    arrays.update(episodes=episodes, goals=goals)
    return arrays


# --- worker processes ---------------------------------------------------------
_worker: dict = {}


def _init_worker(cfg: CollectConfig, progress: mp.Queue, parent: int) -> None:
    cls = scenes.scene_class(cfg.scene)
    _worker.update(cfg=cfg, progress=progress, parent=parent)
    _worker["scene"] = cls(pixels=cfg.pixels, terminate_on_success=False)


def _collect_shard(index: int) -> dict | None:
    cfg: CollectConfig = _worker["cfg"]
    first = index * cfg.episodes_per_shard
    count = min(cfg.episodes_per_shard, cfg.episodes - first)
    q = _worker["progress"]
    arrays = run_episodes(
        _worker["scene"],
        cfg.exploration,
        cfg.seed,
        first,
        count,
        cfg.steps,
        on_episode=lambda: q.put(1),
    )
    if os.getppid() != _worker["parent"]:
        return None  # the collector died: leave the folder to the next run
    return ds.write_shard(Path(cfg.out), index, arrays, first)


def changed(manifest: dict, fresh: dict) -> list[str]:
    """The settings that fix a collection's content (``FIXED``) in which ``manifest``
    differs from ``fresh`` (what the settings now would write)."""
    return [k for k in FIXED if manifest.get(k, ASSUMED.get(k)) != fresh[k]]


def stale(cfg: CollectConfig) -> list[str]:
    """Where the collection at ``cfg.out`` was made otherwise than ``cfg`` would make it
    (``changed``: another version of the scene, other settings); [] where there is none."""
    root = Path(cfg.out)
    if not (root / "manifest.json").exists():
        return []
    return changed(ds.load_manifest(root), new_manifest(cfg))


# --- the collector --------------------------------------------------------------
def prepare(cfg: CollectConfig) -> tuple[dict, list[int]]:
    """Load or start the manifest, check shards on disk; return it and the shards to do."""
    root = Path(cfg.out)
    root.mkdir(parents=True, exist_ok=True)
    fresh = new_manifest(cfg)
    if (root / "manifest.json").exists():
        manifest = ds.load_manifest(root)
        diff = changed(manifest, fresh)
        if diff == ["explore_resets"]:
            raise LabError(
                f"{root} was collected by an older exploration (its episodes start in fewer "
                "situations than this lab's); collect into another --out, or delete it"
            )
        if diff:
            raise LabError(
                f"{root} holds a collection made with other settings ({', '.join(diff)}); "
                "use the same settings to resume it, or another --out"
            )
        manifest["episodes"] = max(cfg.episodes, manifest["episodes"])
    else:
        manifest = fresh
    n_shards = -(-manifest["episodes"] // cfg.episodes_per_shard)
    for tmp in root.glob("shard-*.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)  # cut short by a kill: redo
    shards = {}
    for folder in sorted(root.glob("shard-?????")):
        meta = ds.read_shard_meta(folder) or manifest["shards"].get(folder.name)
        index = int(folder.name.split("-")[1])
        expected = min(
            cfg.episodes_per_shard, manifest["episodes"] - index * cfg.episodes_per_shard
        )
        if meta is None or ds.check_shard(root, meta) or meta["n_episodes"] != expected:
            log.warning("%s is incomplete or damaged: it will be collected again", folder.name)
            shutil.rmtree(folder, ignore_errors=True)
            continue
        shards[folder.name] = meta
    manifest["shards"] = shards
    manifest["complete"] = False
    write_json_atomic(root / "manifest.json", manifest)
    todo = [i for i in range(n_shards) if ds.shard_name(i) not in shards]
    return manifest, todo


def start_method() -> str:
    """``fork`` from a single-threaded process (the CLI: workers start at
    once, nothing to re-import), ``spawn`` otherwise: forking a process that
    runs other threads (the app's server) can copy a held lock and hang."""
    if threading.active_count() == 1 and "fork" in mp.get_all_start_methods():
        return "fork"
    return "spawn"


def collect(
    cfg: CollectConfig,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> Path:
    """Collect (or finish collecting) ``cfg``; returns the dataset folder.

    ``progress(done, total)`` is called as episodes finish (the app's bar);
    setting ``stop`` ends the run early with every finished shard kept (the
    manifest stays incomplete and the same call goes on from there).
    """
    cfg = cfg.resolved()
    root = Path(cfg.out)
    manifest, todo = prepare(cfg)
    done_eps = sum(m["n_episodes"] for m in manifest["shards"].values())
    total = manifest["episodes"]
    if not todo:
        if progress is not None:
            progress(total, total)
        manifest["complete"] = True
        write_json_atomic(root / "manifest.json", manifest)
        return root
    ctx = mp.get_context(start_method())
    done_queue = ctx.Queue()
    workers = min(cfg.workers, len(todo))
    bar = tqdm(
        total=total,
        initial=done_eps,
        unit="ep",
        desc=f"collect {cfg.scene}",
        disable=None if cfg.progress else True,
        dynamic_ncols=True,
    )
    pool = ctx.Pool(workers, initializer=_init_worker, initargs=(cfg, done_queue, os.getpid()))
    try:
        pending = [pool.apply_async(_collect_shard, (i,)) for i in todo]
        written = time.monotonic()
        while pending:
            if stop is not None and stop.is_set():
                write_json_atomic(root / "manifest.json", manifest)
                return root
            with contextlib.suppress(queue.Empty):
                n = done_queue.get(timeout=0.2)
                bar.update(n)
                done_eps += n  # (a disabled tqdm does not count)
                if progress is not None:
                    progress(done_eps, total)
            for job in [j for j in pending if j.ready()]:
                pending.remove(job)
                meta = job.get()  # re-raises a worker's error here
                if meta is not None:
                    manifest["shards"][meta["name"]] = meta
            # At most once a second: each shard carries its own meta.json and
            # is adopted on resume, so the manifest may lag; rewriting it per
            # shard took CPU from the workers.
            if time.monotonic() - written > 1.0:
                write_json_atomic(root / "manifest.json", manifest)
                written = time.monotonic()
        while not done_queue.empty():
            bar.update(done_queue.get())
        if progress is not None:
            progress(total, total)
        manifest["complete"] = True
        write_json_atomic(root / "manifest.json", manifest)
    except KeyboardInterrupt:
        pool.terminate()
        bar.close()
        print(
            f"\nstopped: {len(manifest['shards'])} shards are safe in {root}; "
            "run the same command to go on",
            file=sys.stderr,
        )
        raise
    finally:
        pool.terminate()
        pool.join()
        bar.close()
    return root


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(CollectConfig, argv, "lab collect", "Collect exploration data for a scene.")
    t0 = time.perf_counter()
    try:
        root = collect(cfg)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    data = ds.Dataset(root, verify=False)
    rows = sum(m["rows"] for m in data.shards)
    print(f"{root}: {data.n_episodes} episodes, {rows} frames, {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
