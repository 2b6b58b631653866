"""The talk's guardrail claim on the field's benchmark: a rule held at inference time
against one trained in (PPO-Lagrangian), when the rule changes.

    ./lab bench trained_in [--quick] [--tasks ballcircle] [--steps 200000] [--episodes 20]

Per task (Bullet-Safety-Gym, ``scenes/safety.py``) and its new rule (``rules``:
Circle's boundary at |x| <= 5 instead of 6; Run's speed limit lowered to 0.8 of the
task's on the same track, |y| <= 2; the trained policies are kept in
``runs/trained-in-<task>`` and ``runs/trained-in-<task>-new``, where the Experiments
page finds them, and a later run goes on from them when their settings are these, a
finished one trained no further: delete them to train from nothing):

1. PPO-Lagrangian (``experiments/ppol.py``, cost limit 10 an episode) trained for
   ``--steps`` environment steps under the task's own cost; measured over the lab's
   seeded evaluation episodes (its mean action): ``ppol_return``, ``ppol_cost``,
   ``ppol_env_steps``, and its ``curve`` (each rollout's ended episodes' return and
   cost against environment steps);
2. the same policy measured under the new rule (``ppol_old_new_cost``: its episodes'
   cost counted by the new rule), and a policy trained again under the new rule for
   as many steps (``ppol_retrained_return``, ``ppol_retrained_cost``,
   ``ppol_retrain_env_steps``);
3. the planner on the task's shipped state model (``pretrained/<task>-state``: its
   exploration data alone, no refinement) under the old rule and, with the rule's
   expression edited and nothing retrained, under the new one (``planner_return``,
   ``planner_cost``, ``planner_new_return``, ``planner_new_cost``: the new rule's cost
   per episode in reality). The planner holds each part of a rule inside its limit
   (0.3 m, 0.15 m/s: ``benchmarks/safety_gym.py``'s margins) with iCEM's noise at
   N = 300 (its search).

Part 3 needs a shipped state model: BallCircle's, BallRun's and CarRun's (CarCircle's
row leaves its figures out). ``published_ppol``: FSRL's PPO-Lagrangian return and cost.
The last line is JSON: one row per task. ``--quick``: 20 000 steps and 4 episodes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import scenes  # noqa: E402
from common.errors import LabError  # noqa: E402
from common.paths import home  # noqa: E402
from common.results import save  # noqa: E402
from experiments.ppol import RESUMED, PPOLConfig, load, measure, read, train  # noqa: E402
from experiments.trained_in import limits, mean_of, planner, rule, rules  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from safety_gym import PUBLISHED  # noqa: E402

# lambda's gains where ppol's PID (0.05, 0.005, 0.1) fails a task at 200 000 steps:
# BallRun's speed pays about 16 a step against a cost of 1, so lambda must pass 16 while
# the ball learns to run; the PID's integral reached 22 only at the last rollout and the
# policy kept the cost at 91 an episode (1610.53 / 91.0, 20 episodes); plain gradient
# ascent at 0.05 keeps it (346.46 / 0 in the same episodes)
GAINS = {"ballrun": {"kp": 0.0, "ki": 0.05, "kd": 0.0}}


def trained(cfg: PPOLConfig) -> Path:
    """``cfg``'s policy, going on from its folder when that was trained with the same
    settings (to ``cfg.steps``: a finished one is not trained further)."""
    try:
        kept = read(cfg.out)["config"]
        same = kept["seed"] == cfg.seed and all(kept[k] == getattr(cfg, k) for k in RESUMED)
    except (LabError, KeyError, TypeError):
        same = False
    return train(replace(cfg, resume=same))


def run_task(key: str, args, kept: Path) -> dict:
    cls = scenes.scene_class(key)
    old, new = rules(cls)
    new_rule = rule(new)
    t0 = time.time()
    first = trained(
        PPOLConfig(
            scene=key,
            steps=args.steps,
            seed=args.seed,
            out=str(kept / f"trained-in-{key}"),
            **GAINS.get(key, {}),
        )
    )
    policy, record = load(first), read(first)
    own = measure(policy, args.episodes, args.seed)
    under_new = measure(policy, args.episodes, args.seed, rule=new_rule)
    retrained_folder = trained(
        PPOLConfig(
            scene=key,
            steps=args.steps,
            seed=args.seed,
            rule=new,
            limit=0.0,
            out=str(kept / f"trained-in-{key}-new"),
            **GAINS.get(key, {}),
        )
    )
    retrained = measure(load(retrained_folder), args.episodes, args.seed, rule=new_rule)
    row = {
        "task": cls.TASK_ID,
        "episodes": args.episodes,
        "ppol_return": mean_of(own, "return"),
        "ppol_cost": mean_of(own, "cost"),
        "ppol_env_steps": record["env_steps"],
        "published_ppol": PUBLISHED[key]["ppo_lagrangian"],
        "gains": {k: record["config"][k] for k in ("kp", "ki", "kd")},  # lambda's
        "rule": f"{old} <= 0",
        "new_rule": f"{new} <= 0",
        "ppol_old_new_cost": mean_of(under_new, "cost"),
        "ppol_retrained_return": mean_of(retrained, "return"),
        "ppol_retrained_cost": mean_of(retrained, "cost"),
        "ppol_retrain_env_steps": read(retrained_folder)["env_steps"],
        "curve": record["curve"],
    }
    model = ROOT / "pretrained" / f"{key}-state"
    if model.exists():
        before = planner(key, model, limits(cls), args.episodes, args.seed)
        after = planner(key, model, limits(cls, new=True), args.episodes, args.seed)
        row.update(
            planner_return=before["return"],
            planner_cost=before["cost"],
            planner_new_return=after["return"],
            planner_new_cost=after["cost"],
        )
    row["seconds"] = round(time.time() - t0)
    print(
        f"{cls.TASK_ID}: PPO-Lagrangian {row['ppol_return']} / {row['ppol_cost']} after "
        f"{row['ppol_env_steps']} steps; under {row['new_rule']} its cost "
        f"{row['ppol_old_new_cost']} an episode, retrained {row['ppol_retrained_return']} / "
        f"{row['ppol_retrained_cost']} after {row['ppol_retrain_env_steps']} more; planner "
        f"{row.get('planner_return')} / {row.get('planner_cost')}, under the new rule "
        f"{row.get('planner_new_return')} / {row.get('planner_new_cost')} (nothing retrained)",
        flush=True,
    )
    return row


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="20 000 steps, 4 episodes")
    ap.add_argument("--tasks", default="ballcircle,carcircle,ballrun,carrun")
    ap.add_argument("--steps", type=int, default=200_000, help="PPO-Lagrangian's env steps")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.quick:
        args.steps, args.episodes = 20_000, 4
    rows = []
    for task in args.tasks.split(","):
        rows.append(run_task(scenes.scene_key(task), args, home() / "runs"))
    print(json.dumps(rows))
    save("trained_in", rows, ap, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
