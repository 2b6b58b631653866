"""Collection speed against the bare render limit, measured in one run.

    ./lab bench collect_speed [--quick] [--scene reach|wall|push|kitchen|all]

Rendering 64x64 frames with TinyRenderer is the floor under collection
cost; everything else (physics, the policy, copying, writing shards,
processes) should add little. So this script measures, on the same machine
and in the same run:

* ``render_limit_fps``: ``W`` processes at once (W = workers), each a bare
  loop of 64x64 ``getCameraImage`` calls on the scene, summed;
* ``frames_per_s``: ``./lab collect`` with pixels on ``W`` workers, frames
  written per second of wall time, start-up and shard writes included;

and prints ``ratio = frames_per_s / render_limit_fps`` (goal: >= 0.8). The
last line is JSON: one object for one scene, a list for ``--scene all``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pybullet as p

import scenes
from common.results import save
from scenes.collect import CollectConfig, collect


def _render_loop(scene: str, seconds: float, start, out) -> None:
    env = scenes.scene_class(scene)(pixels=True)
    env.reset(seed=0)
    cam, client = env.camera, env.client
    start.wait()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        client.getCameraImage(
            64,
            64,
            cam.view,
            cam.projection,
            shadow=0,
            renderer=p.ER_TINY_RENDERER,
            flags=p.ER_NO_SEGMENTATION_MASK,
        )
        n += 1
    out.put(n / (time.perf_counter() - t0))
    env.close()


def render_limit(scene: str, workers: int, seconds: float) -> float:
    """Frames/s of ``workers`` concurrent bare render loops, summed."""
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_render_loop, args=(scene, seconds, start, out)) for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    time.sleep(1.0)  # let every process build its scene before the clock starts
    start.set()
    fps = sum(out.get() for _ in procs)
    for proc in procs:
        proc.join()
    return fps


def collect_rate(scene: str, workers: int, episodes: int) -> tuple[float, int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = CollectConfig(
            scene=scene,
            out=tmp,
            episodes=episodes,
            workers=workers,
            episodes_per_shard=2,
            progress=False,
        )
        t0 = time.perf_counter()
        collect(cfg)
        seconds = time.perf_counter() - t0
        rows = sum(
            m["rows"]
            for m in json.loads((Path(tmp) / "manifest.json").read_text())["shards"].values()
        )
    return rows / seconds, rows, seconds


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scene", default="reach", choices=[*scenes.SCENES, "all"])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true", help="a smaller run, under 60 s")
    ap.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="seconds of bare rendering per scene (collection runs about twice "
        "as long); default 8, or 3 with --quick",
    )
    args = ap.parse_args()
    names = list(scenes.SCENES) if args.scene == "all" else [args.scene]
    seconds = args.seconds or (3.0 if args.quick else 8.0)
    results = []
    for name in names:
        limit = render_limit(name, args.workers, seconds)
        # Size the collection to last about `seconds * 2` at the render limit.
        steps = scenes.scene_class(name).MAX_EPISODE_STEPS + 1
        episodes = max(4 * args.workers, int(limit * seconds * 2 / steps))
        # Whole shards of 2 episodes, the same number per worker: no worker
        # sits idle at the end waiting for another's last shard.
        episodes -= episodes % (2 * args.workers)
        fps, rows, secs = collect_rate(name, args.workers, episodes)
        r = {
            "scene": name,
            "workers": args.workers,
            "frames_per_s": round(fps, 1),
            "render_limit_fps": round(limit, 1),
            "ratio": round(fps / limit, 3),
        }
        print(
            f"{name}: collected {rows} frames ({episodes} episodes) in {secs:.1f} s = {fps:.0f} "
            f"frames/s; bare render limit {limit:.0f} frames/s on {args.workers} processes; "
            f"ratio {fps / limit:.2f}"
        )
        results.append(r)
    out_figures = results[0] if len(results) == 1 else results
    print(json.dumps(out_figures))
    save("collect_speed", out_figures, ap, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
