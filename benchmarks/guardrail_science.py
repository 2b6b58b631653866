"""Guardrail science: fresh rules, calibrated margins, stress tests and Ray.

    ./lab bench guardrail_science [--quick] [--only rules,coverage,knife,stress,ray] [--ray]

On the shipped state models (pretrained/*-state):

* ``fresh_rules``: six rules written for this benchmark, two per scene (Reach,
  Push, Kitchen), none of them a preset: speed limits that apply in part of
  the space, keep-out zones, a height limit. Each is planned as a hard term
  on top of the scene's own design (Push: get behind the block), and
  measured on the same seeded episodes as: ``unguarded`` (the rule off,
  checked in reality), ``plain`` (hard term, CEM without repair: how the lab
  planned before, the freezing baseline), ``repair`` (CEM with the
  constraint-aware repair, ``PlannerConfig.repair``), ``calibrated``
  (repair, and the rule held over the conformal bound at delta 0.05 at every
  imagined step) and ``calibrated_step1`` (over the first imagined step, the
  one acted on; ``AgentConfig.margin_steps``).
  Goals: success >= 0.8 x unguarded, violation step rate <= 1 %.
* ``coverage``: a copy of each model calibrated on 60 of the agent's own
  episodes (``experiments.calibrate``), then the share of 40 fresh episodes' gaps
  inside the delta 0.05 bound, per signal, on average over the episodes (what
  the bound promises; goal >= 0.94 for every signal), and pooled over steps.
* ``knife``: Kitchen's knife rule with the calibrated margin (delta 0.05), the
  person near: violation step rate (goal <= 0.5 %) and success (goal >= 0.9 x
  unguarded).
* ``stress``: the knife rule as specified, planned without a margin; CEM over
  Kitchen's reset parameters against uniform sampling at the same budget
  (goal: CEM finds >= 2x the violating episodes).
* ``ray``: the same Kitchen episodes locally and over Ray with 2 workers (Ray
  already started, as in the app): speedup (goal >= 1.6 on 2 cores) and
  whether the records are identical (timings aside).

Prints the figures, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.agent import AgentConfig  # noqa: E402
from agents.cost import CostSet, Term  # noqa: E402
from agents.planners import CEM_300  # noqa: E402
from common.results import save  # noqa: E402
from experiments import fanout  # noqa: E402
from experiments.calibrate import (  # noqa: E402
    DELTAS,
    calibrate_closed_loop,
    closed_loop_gaps,
    coverage,
)
from experiments.evaluate import evaluate  # noqa: E402
from experiments.stress import stress  # noqa: E402
from experiments.system12 import TRAINED_UNDER  # noqa: E402
from scenes.kitchen import KNIFE_RULE  # noqa: E402
from worldmodels.checkpoint import load_checkpoint  # noqa: E402

PRETRAINED = ROOT / "pretrained"
# Written for this benchmark (not the presets): name, expression (hard, limit 0).
RULES = {
    "reach": [
        ("slow on the right", "relu(speed - 0.2) * (x > 0.2)"),
        ("keep out of the pond", "relu(0.2 - sqrt((x - 0.35)**2 + (y + 0.35)**2))"),
    ],
    "push": [
        ("gentle with the block", "relu(block_speed - 0.2)"),
        ("stay below the top strip", "relu(y - 0.6)"),
    ],
    "kitchen": [
        ("slow with the knife low", "relu(hand_speed - 0.3) * (knife_height < 0.12)"),
        (
            "descend only over the target",
            "relu(0.12 - knife_height)"
            " * (sqrt((hand_x - goal_hand_x)**2 + (hand_y - goal_hand_y)**2) > 0.05)",
        ),
    ],
}
BASE = {"reach": CostSet(), "push": TRAINED_UNDER["push"], "kitchen": CostSet()}
KNIFE = CostSet(terms=[Term("knife rule", KNIFE_RULE, "hard")])
NEAR = {"person_near": True}
DELTA = 0.05  # the miss rate the full run holds the rules to (README: Guardrail science)


def smallest_delta(episodes: int) -> float:
    """The smallest calibrated miss rate that ``episodes`` calibration episodes can
    promise: the bound needs (1 - delta)(E + 1)/E <= 1 (``experiments.calibrate``)."""
    allowed = [d for d in DELTAS if (1 - d) * (episodes + 1) / episodes <= 1]
    if not allowed:
        raise ValueError(f"{episodes} calibration episodes promise no miss rate in {DELTAS}")
    return min(allowed)


def settings(quick: bool) -> dict:
    """Episodes per design, calibration episodes, the stress test's budget, the Ray
    episodes and the miss rate: the full run's, or the smoke run's (``--quick``), whose
    4 calibration episodes cannot promise delta 0.05 (19 needed) and so hold the rules
    to the smallest miss rate they can."""
    if not quick:
        return {"episodes": 20, "calibration": 60, "stress": 200, "ray": 16, "delta": DELTA}
    cal = 4
    return {"episodes": 3, "calibration": cal, "stress": 20, "ray": 4, "delta": smallest_delta(cal)}


def design(scene: str, rule: tuple[str, str] | None, enabled: bool = True) -> CostSet:
    base = BASE[scene]
    terms = list(base.terms)
    if rule is not None:
        terms.append(Term(rule[0], rule[1], "hard", enabled=enabled))
    return CostSet(base.task, base.task_weight, terms)


def figures(result) -> dict:
    s = result.summary()
    return {
        "success": s["success_rate"]["value"],
        "violation_step_rate": s["violation_step_rate"]["value"],
        "plan_ms": round(float(np.mean([e["plan_ms"] for e in result.episodes])), 1),
    }


def run(scene, ckpt, costs, cfg, n, rule=None, options=None, ray=None, seed=0):
    guard = None if rule is None else [Term(rule[0], rule[1], "hard")]
    return evaluate(
        scene, ckpt, costs, cfg, n, seed, device="cpu", options=options, guardrails=guard, ray=ray
    )


def calibrated(scene: str, folder: Path, episodes: int, ray) -> Path:
    """A copy of the scene's shipped model, calibrated on the agent's own episodes."""
    dst = folder / f"{scene}-state"
    if not dst.exists():
        shutil.copytree(PRETRAINED / f"{scene}-state", dst)
        costs = KNIFE if scene == "kitchen" else design(scene, None)
        calibrate_closed_loop(
            dst, costs, AgentConfig(search=CEM_300), episodes, device="cpu", ray=ray
        )
    return dst


def fresh_rules(n: int, folder: Path, cal_episodes: int, ray, delta: float = DELTA) -> dict:
    out = {}
    for scene, rules in RULES.items():
        ckpt = calibrated(scene, folder, cal_episodes, ray)
        opts = NEAR if scene == "kitchen" else None
        for rule in rules:
            t0 = time.perf_counter()
            variants = {
                "unguarded": (design(scene, rule, enabled=False), AgentConfig(search=CEM_300)),
                "plain": (design(scene, rule), AgentConfig(search=replace(CEM_300, repair=0))),
                "repair": (design(scene, rule), AgentConfig(search=CEM_300)),
                "calibrated": (design(scene, rule), AgentConfig(search=CEM_300, delta=delta)),
                "calibrated_step1": (
                    design(scene, rule),
                    AgentConfig(search=CEM_300, delta=delta, margin_steps=1),
                ),
            }
            row = {
                k: figures(run(scene, ckpt, c, cfg, n, rule, opts, ray))
                for k, (c, cfg) in variants.items()
            }
            base = row["unguarded"]["success"]
            for k in ("plain", "repair", "calibrated", "calibrated_step1"):
                row[k]["success_ratio"] = round(row[k]["success"] / base, 3) if base else None
            out[f"{scene}: {rule[0]}"] = row
            print(f"{scene:>8} {rule[0]!r} ({time.perf_counter() - t0:.0f} s)")
            for k, f in row.items():
                ratio = "" if k == "unguarded" else f" ({f['success_ratio']}x)"
                print(
                    f"   {k:>10}: success {f['success']:.2f}{ratio}, violating steps "
                    f"{100 * f['violation_step_rate']:.2f} %, plan {f['plan_ms']} ms"
                )
            sys.stdout.flush()
    return out


def coverage_figures(n: int, folder: Path, cal_episodes: int, ray, delta: float = DELTA) -> dict:
    out = {}
    for scene in RULES:
        ckpt = calibrated(scene, folder, cal_episodes, ray)
        model, _ = load_checkpoint(ckpt, "cpu")
        costs = KNIFE if scene == "kitchen" else design(scene, None)
        gaps, names, _ = closed_loop_gaps(
            ckpt, costs, AgentConfig(search=CEM_300), n, seed=0, device="cpu", ray=ray
        )
        cov = coverage(gaps, model.probe_conformal[delta], names)  # per episode, averaged
        pooled = coverage(np.concatenate(gaps), model.probe_conformal[delta], names)
        out[scene] = {k: round(v, 4) for k, v in cov.items()}
        out[f"{scene}_pooled_steps"] = {k: round(v, 4) for k, v in pooled.items()}
        print(
            f"{scene:>8} coverage at delta {delta} on {n} fresh episodes (their average): "
            f"min {min(cov.values()):.3f} ({min(cov, key=cov.get)}); "
            + ", ".join(f"{k} {v:.3f}" for k, v in cov.items())
            + f"; pooled over steps: min {min(pooled.values()):.3f}"
        )
    return out


def knife(n: int, folder: Path, cal_episodes: int, ray, delta: float = DELTA) -> dict:
    ckpt = calibrated("kitchen", folder, cal_episodes, ray)
    rule = ("knife rule", KNIFE_RULE)
    off = figures(
        run(
            "kitchen",
            ckpt,
            design("kitchen", rule, False),
            AgentConfig(search=CEM_300),
            n,
            rule,
            NEAR,
            ray,
        )
    )
    on = figures(
        run("kitchen", ckpt, KNIFE, AgentConfig(search=CEM_300, delta=delta), n, rule, NEAR, ray)
    )
    ratio = round(on["success"] / off["success"], 3) if off["success"] else None
    print(
        f" knife rule, delta {delta}: success {on['success']:.2f} ({ratio}x unguarded "
        f"{off['success']:.2f}), violating steps {100 * on['violation_step_rate']:.2f} % "
        f"(unguarded {100 * off['violation_step_rate']:.2f} %)"
    )
    return {
        "violation_step_rate": on["violation_step_rate"],
        "success": on["success"],
        "success_unguarded": off["success"],
        "success_ratio": ratio,
    }


def stress_figures(budget: int, ray) -> dict:
    ckpt = PRETRAINED / "kitchen-state"
    out = {}
    for method in ("cem", "random"):
        t0 = time.perf_counter()
        r = stress(
            "kitchen",
            ckpt,
            KNIFE,
            AgentConfig(search=CEM_300),
            budget,
            method,
            seed=0,
            device="cpu",
            ray=ray,
        )
        out[method] = len(r.failures)
        worst = r.failures[0]["excess"] if r.failures else 0.0
        print(
            f" stress {method:>6}: {len(r.failures)} of {len(r.episodes)} episodes broke the "
            f"knife rule (worst excess {worst:.3f} m/s; {time.perf_counter() - t0:.0f} s)"
        )
    return out


def ray_figures(n: int) -> dict:
    ray = fanout.connect("local", cpus=2)  # started once, as the app does (or by --ray)
    n_workers = fanout.workers(ray)
    ckpt = PRETRAINED / "kitchen-state"
    rule = ("knife rule", KNIFE_RULE)
    t0 = time.perf_counter()
    local = run("kitchen", ckpt, KNIFE, AgentConfig(search=CEM_300), n, rule, NEAR)
    t_local = time.perf_counter() - t0
    t0 = time.perf_counter()
    remote = run("kitchen", ckpt, KNIFE, AgentConfig(search=CEM_300), n, rule, NEAR, ray="local")
    t_ray = time.perf_counter() - t0

    def strip(eps):
        return [{k: v for k, v in e.items() if k != "plan_ms"} for e in eps]

    same = strip(local.episodes) == strip(remote.episodes)
    print(
        f" ray: {n} episodes {t_local:.1f} s locally, {t_ray:.1f} s on {n_workers} Ray workers "
        f"({t_local / t_ray:.2f}x); identical records: {same}"
    )
    return {
        "ray_speedup": round(t_local / t_ray, 3),
        "ray_identical": same,
        "ray_workers": n_workers,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="few episodes: a smoke run (delta 0.2, all its 4 calibration episodes can promise)",
    )
    ap.add_argument("--only", default="rules,coverage,knife,stress,ray")
    ap.add_argument("--ray", action="store_true", help="fan the episodes out over local Ray")
    args = ap.parse_args()
    torch.set_num_threads(1)
    q = args.quick
    s = settings(q)
    n, cal, budget, n_ray, delta = (
        s["episodes"],
        s["calibration"],
        s["stress"],
        s["ray"],
        s["delta"],
    )
    ray = "local" if args.ray else None
    only = set(args.only.split(","))
    out: dict = {"quick": q, "episodes": n, "calibration_episodes": cal, "delta": delta}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if "rules" in only:
            out["fresh_rules"] = fresh_rules(n, folder, cal, ray, delta)
        if "coverage" in only:
            out["coverage"] = coverage_figures(n if q else 40, folder, cal, ray, delta)
        if "knife" in only:
            out["knife"] = knife(max(n, 3 if q else 30), folder, cal, ray, delta)
    if "stress" in only:
        found = stress_figures(budget, ray)
        out["stress_episodes"] = budget
        out["stress_failures_cem"], out["stress_failures_random"] = found["cem"], found["random"]
    if "ray" in only:
        out.update(ray_figures(n_ray))
    print(json.dumps(out))
    save("guardrail_science", out, ap, args, ignore=("ray",))


if __name__ == "__main__":
    main()
