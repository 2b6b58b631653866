"""Calibrated guardrail margins: split-conformal bounds on the model's imagination error.

    ./lab calibrate --checkpoint pretrained/kitchen-state --episodes 60 [--costs design.json]
    ./lab calibrate --checkpoint pretrained/kitchen-state --data data/pretrain/kitchen

A margin of "one RMSE" promises nothing. This one does: the agent runs its own
closed-loop episodes (it plans with the model and acts in the real scene, as
it will when it is used), and at every step its chosen plan is also followed
open loop in reality from a snapshot of the scene (then the snapshot is put
back): for every signal and imagined step h the absolute gap between what the
plan imagined and what following it did is kept. That is the error a hard
term checked over the horizon must allow for. (Comparing with the episode's
own future instead mixes in the replanning from step 2 on: at h = 4 it gave
a 0.27 m/s bound on Kitchen's hand speed, against 0.10 at h = 1.) For a miss
rate delta the bound is the split-conformal quantile of those gaps (Vovk et
al. 2005; Angelopoulos and Bates, "A gentle introduction to conformal
prediction", 2021), counted in episodes (``episode_bound``): the units that
are exchangeable are episodes, not the steps of one. If a new episode is
exchangeable with the calibration ones, its gaps are within the bound with
probability at least 1 - delta on average. Calibrating on the agent's own
plans, not on the exploration data's windows, is what makes the gaps close to
exchangeable with the ones met when it is used (as iterative conformal prediction
calibrates on closed-loop data: "Who Moved My Distribution? Conformal Prediction for
Interactive Multi-Agent Systems", 2025, arXiv:2511.11567); ``coverage`` measures the
promise on fresh episodes.

The bounds for each delta in ``DELTAS`` are stored in the checkpoint beside
``probe_rmse`` (``probe_conformal``, with what they were measured on); the
agent's ``delta`` setting (Plan, Experiments, ``./lab evaluate --delta``)
makes every hard term hold over them (``agents.cost.Cost.set_margins``).
``--data`` measures the older RMSE table on held-out exploration windows
(``worldmodels.calibrate``). Weights are untouched either way.
"""

from __future__ import annotations

import math
import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

import scenes
from agents.agent import AgentConfig
from agents.cost import CostSet
from agents.planners import PlannerConfig
from common.config import parse_config
from common.device import choose_device
from common.errors import LabError
from experiments.evaluate import evaluate
from worldmodels import calibrate as rmse
from worldmodels.checkpoint import load_checkpoint, update_config

DELTAS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)  # the miss rates a checkpoint is calibrated for
CALIBRATION_SEED = 1000  # calibration episodes; evaluations default to seed 0: kept apart


def conformal_bound(gaps: np.ndarray, delta: float) -> np.ndarray:
    """The split-conformal bound of ``gaps`` (n, ...) at miss rate ``delta``, per column:
    the ceil((n + 1)(1 - delta))-th smallest of the column's n finite gaps (NaN: missing),
    or +inf when that is more than n (too few gaps to promise 1 - delta)."""
    if not 0 < delta < 1:
        raise LabError("the miss rate delta must be between 0 and 1")
    gaps = np.asarray(gaps, np.float64)
    n = np.isfinite(gaps).sum(axis=0)  # (...)
    k = np.ceil((n + 1) * (1 - delta)).astype(np.int64)  # 1-based rank
    ordered = np.sort(np.where(np.isfinite(gaps), gaps, np.inf), axis=0)  # missing last
    pick = np.take_along_axis(ordered, np.clip(k - 1, 0, len(gaps) - 1)[None], axis=0)[0]
    return np.where(k <= n, pick, np.inf)


def episode_bound(episodes: list[np.ndarray], delta: float) -> np.ndarray:
    """The split-conformal bound at miss rate ``delta`` counted in episodes: ``episodes``
    [(T_e, ...)] of gaps, each episode weighing 1/E whatever its length; per column, the
    smallest gap at which the episodes' mean coverage reaches (1 - delta)(E + 1)/E, or
    +inf when that is more than 1 (too few episodes to promise 1 - delta).

    Steps of one episode are not exchangeable with each other (an episode along a wall
    errs on most of its steps), episodes are: so the correction is in episodes, and a
    long episode counts no more than a short one. A new episode's step is then within the
    bound with probability >= 1 - delta on average. On Reach, 40 fresh episodes: pooled
    over steps, 30 calibration episodes covered x on 0.87 of its gaps; counted in
    episodes, 0.93 (and 0.94 with 100)."""
    if not 0 < delta < 1:
        raise LabError("the miss rate delta must be between 0 and 1")
    if not episodes:
        raise LabError("no episode finished: nothing to calibrate on")
    E = len(episodes)
    target = (1 - delta) * (E + 1) / E
    gaps = np.concatenate([np.asarray(e, np.float64) for e in episodes], axis=0)
    if target > 1:
        return np.full(gaps.shape[1:], np.inf)
    weight = np.concatenate([np.full(len(e), 1.0 / (E * len(e))) for e in episodes])
    order = np.argsort(np.where(np.isnan(gaps), np.inf, gaps), axis=0, kind="stable")
    ordered = np.take_along_axis(gaps, order, axis=0)
    w = weight.reshape(-1, *([1] * (gaps.ndim - 1)))
    covered = np.cumsum(np.take_along_axis(np.broadcast_to(w, gaps.shape), order, 0), 0)
    k = (covered < target - 1e-12).sum(axis=0)  # gaps needed before the target is reached
    pick = np.take_along_axis(ordered, np.minimum(k, len(gaps) - 1)[None], axis=0)[0]
    return np.where(k < len(gaps), pick, np.inf)


def bounds_table(episodes: list[np.ndarray], names: list[str], deltas=DELTAS) -> dict:
    """{delta: {signal: [bound at steps 1..H]}} from episodes' gaps [(T_e, H, S)]."""
    out = {}
    for d in deltas:
        b = episode_bound(episodes, d)  # (H, S)
        out[float(d)] = {k: [float(x) for x in b[:, i]] for i, k in enumerate(names)}
    return out


def coverage(gaps, table: dict[str, list[float]], names: list[str]) -> dict:
    """The share of fresh ``gaps`` within ``table``'s bounds, per signal, over all imagined
    steps: of every gap of (M, H, S), or of episodes [(T_e, H, S)] on average over them,
    each episode counting once (what the bound promises: ``episode_bound``)."""
    if isinstance(gaps, list):
        per = [coverage(e, table, names) for e in gaps]
        return {k: float(np.mean([c[k] for c in per])) for k in names}
    out = {}
    for i, k in enumerate(names):
        g = gaps[:, : len(table[k]), i]
        bound = np.asarray(table[k])[None, : g.shape[1]]
        ok = np.isfinite(g)
        out[k] = float((g[ok] <= np.broadcast_to(bound, g.shape)[ok]).mean()) if ok.any() else None
    return out


def closed_loop_gaps(
    checkpoint: str | Path,
    costs: CostSet,
    agent_cfg: AgentConfig,
    episodes: int,
    seed: int,
    progress=None,
    stop: threading.Event | None = None,
    device=None,
    ray: str | None = None,
) -> tuple[list[np.ndarray], list[str], dict]:
    """The agent's own episodes (``evaluate`` with the model alone): their gaps
    [(T_e, H, S)], the signal names, and what they were measured on. A scene with
    several exploration settings (Kitchen: the person near or not) runs its episodes in
    each, in turn."""
    model, config = load_checkpoint(checkpoint, device or "cpu")
    names = list(model.signal_names)
    cls = scenes.scene_class(config["scene"])
    settings = list(getattr(cls, "EXPLORE_RESETS", ({},)))
    errors: list[np.ndarray] = []
    done = 0
    for j, options in enumerate(settings):
        share = episodes // len(settings) + (j < episodes % len(settings))
        if share == 0 or (stop is not None and stop.is_set()):
            continue
        evaluate(
            config["scene"],
            checkpoint,
            costs,
            agent_cfg,
            share,
            seed + j,
            progress=None if progress is None else lambda d, _t, base=done: progress(base + d),
            stop=stop,
            device=device,
            options=options,
            errors=errors,
            ray=ray,
        )
        done += share
    what = {
        "episodes": len(errors),
        "gaps": int(sum(len(e) for e in errors)),
        "seed": seed,
        "planner": agent_cfg.planner,
        "search": {"samples": agent_cfg.search.samples, "horizon": agent_cfg.search.horizon},
        "costs": [t.name for t in costs.terms if t.enabled],
        "options": settings,
    }
    if not errors:
        raise LabError("no episode finished: nothing to calibrate on")
    return errors, names, what


def calibrate_closed_loop(
    checkpoint: str | Path,
    costs: CostSet,
    agent_cfg: AgentConfig,
    episodes: int,
    seed: int = CALIBRATION_SEED,
    progress=None,
    stop: threading.Event | None = None,
    device=None,
    ray: str | None = None,
) -> dict[float, dict[str, list[float]]]:
    """Measure the bounds on the agent's closed-loop episodes, store them in the checkpoint
    (``probe_conformal``) and return {delta: {signal: [bound at steps 1..H]}}."""
    if episodes < 2:
        raise LabError("calibrate on at least 2 episodes (19 or more for delta 0.05)")
    gaps, names, what = closed_loop_gaps(
        checkpoint, costs, agent_cfg, episodes, seed, progress, stop, device, ray
    )
    table = bounds_table(gaps, names)
    entry = {
        "deltas": list(table),
        # JSON has no infinity: a bound too few gaps can give is stored as null
        "bounds": [
            {k: [x if math.isfinite(x) else None for x in v] for k, v in t.items()}
            for t in table.values()
        ],
        "measured_on": what,
    }
    update_config(checkpoint, probe_conformal=entry)
    return table


# --- the command line ------------------------------------------------------------
@dataclass
class CalibrateConfig:
    """./lab calibrate: a checkpoint's error, for the agent's guardrail margins."""

    checkpoint: str = field(default="", metadata={"help": "checkpoint folder", "required": True})
    episodes: int = field(
        default=0,
        metadata={"help": "closed-loop episodes of the agent for the conformal bounds (60)"},
    )
    costs: str = field(
        default="", metadata={"help": "the cost set the agent plans with (default: task only)"}
    )
    planner: str = field(default="cem", metadata={"help": "cem, mppi or gd"})
    seed: int = field(default=CALIBRATION_SEED, metadata={"help": "calibration episodes' seed"})
    data: str = field(
        default="",
        metadata={"help": "also (or only) the probe RMSE on this dataset's held-out windows"},
    )
    ray: str = field(
        default="", metadata={"help": "fan episodes out over Ray: 'local' or a cluster address"}
    )
    device: str = field(default="auto", metadata={"help": "auto (cuda when present), cpu, cuda"})


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(CalibrateConfig, argv, "lab calibrate", __doc__.split("\n\n")[0])
    if not cfg.episodes and not cfg.data:
        print(
            "error: give --episodes N (conformal bounds), --data DATASET (RMSE) or both",
            file=sys.stderr,
        )
        return 2
    try:
        if cfg.data:
            rc = rmse.main(
                ["--checkpoint", cfg.checkpoint, "--data", cfg.data, "--device", cfg.device]
            )
            if rc:
                return rc
        if cfg.episodes:
            costs = CostSet.load(cfg.costs) if cfg.costs else CostSet()
            agent = AgentConfig(planner=cfg.planner, search=replace(PlannerConfig()))
            bar = tqdm(total=cfg.episodes, unit="episode", desc="calibrate", dynamic_ncols=True)
            table = calibrate_closed_loop(
                cfg.checkpoint,
                costs,
                agent,
                cfg.episodes,
                cfg.seed,
                progress=lambda d: bar.update(d - bar.n),
                device=choose_device(cfg.device),
                ray=cfg.ray or None,
            )
            bar.close()
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if cfg.episodes:
        print(
            f"{cfg.checkpoint}: conformal bounds on |imagined - real| at imagined steps 1, 4, "
            f"16, from {cfg.episodes} closed-loop episodes"
        )
        for delta in (0.05, 0.01):
            print(f" miss rate delta {delta:g}:")
            for name, curve in table[delta].items():
                picks = [curve[h - 1] for h in (1, 4, 16) if h <= len(curve)]
                print(f"  {name:>18}: " + "  ".join(f"{x:.4g}" for x in picks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
