"""The field's safe-RL benchmark in the lab: Bullet-Safety-Gym tasks, planner and oracle.

    ./lab bench safety_gym [--quick] [--tasks ballcircle carrun ...]

For each task (``scenes.safety``): explore with correlated random actions (``./lab
collect``, state observations), train a state JEPA on that data (``./lab train``),
then ``--rounds`` rounds of the agent acting in reality under the rule, its episodes
added to the data and the model trained again (``./lab refine``: random data cover
where random actions go, not where the planner goes). Then the planner runs over
seeded episodes with the task's reward as its task term and the task's rule as a hard
guardrail (``SafetyScene.presets``, its limit drawn in by ``INSIDE`` for the model's
error), and the oracle (the same search on the true simulator, through snapshots) on
the first of the same episodes. The figures are the benchmark's own: episode return
(reward summed) and episode cost (``info["cost"]`` summed), means with 95 % bootstrap
intervals over episodes; the environment steps the lab took (exploration and the
rounds: nothing else touched the real task before the evaluation); and the published
figures at cost limit 10 (FSRL's benchmark, final points read off its curves, 0.3-2 M
steps) to compare with.

The last line is JSON: a list with one object per task: ``task``, ``lab_return``,
``lab_cost`` (each ``{value, low, high}``), ``lab_env_steps``, ``oracle_return``,
``oracle_cost``, ``published``, and the settings (``episodes``, ``train_steps``,
``rule``, ``plan_ms``, ``refine_rounds``). ``--quick`` (a few minutes) uses less data,
a shorter training, one short round and 2 episodes (the oracle 1), and writes
``safety_gym-partial.json``. The oracle plans on the first ``--oracle-episodes`` of
the same seeded episodes, with a smaller search (``ORACLE``): its simulator steps are
the package's, 0.1-0.8 ms each.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scenes
from agents.agent import AgentConfig
from agents.cost import CostSet, Term
from agents.planners import CEM_300
from common.device import choose_device
from common.errors import LabError
from common.results import command, read, save, write
from experiments.evaluate import evaluate
from experiments.refine import refine
from experiments.trained_in import INSIDE  # how far inside each rule the planner keeps
from scenes.collect import CollectConfig, collect
from worldmodels.train import TrainConfig, Trainer

# Published at cost limit 10 (FSRL), return / cost: PPO-Lagrangian and the best
# constrained method per task.
PUBLISHED = {
    "ballcircle": {"ppo_lagrangian": [500, 7], "best": ["CVPO", 695, 9]},
    "carcircle": {"ppo_lagrangian": [395, 8], "best": ["CVPO", 430, 6]},
    "ballrun": {"ppo_lagrangian": [385, 5], "best": ["CPO", 465, 9]},
    "carrun": {"ppo_lagrangian": [505, 6], "best": ["TRPO-Lagrangian", 570, 10]},
}
# Exploration episodes per task: about 40 k environment steps each (60 k for CarCircle's
# 300-step episodes), under a tenth of what the published figures took (0.3-2 M).
EPISODES = {"ballcircle": 200, "carcircle": 200, "ballrun": 400, "carrun": 200}
# The oracle steps the package's simulator N x H x iterations times a plan (0.12 ms a
# Ball step, 0.8 ms a Car step on one core): half the usual oracle's samples, on fewer
# episodes, keep a Car episode to about 3 minutes.
ORACLE = replace(CEM_300, samples=32, horizon=12, iterations=2, elites=6)
# The search's noise and memory (``--search``): iCEM's coloured noise and kept elites,
# or plain CEM. A car must hold its throttle for many steps before Circle pays: the
# oracle on CarCircle's first episode reached 394 at cost 0 with iCEM (beta 2, keep
# 0.3) and 25 with white noise (the same N = 32, H = 12).
SEARCHES = {"icem": {"noise_beta": 2.0, "keep": 0.3}, "cem": {}}


def rule_terms(cls) -> tuple[list[Term], list[Term]]:
    """The task's rule as the planner holds it (drawn in) and as reality judges it."""
    preset = cls.presets()[
        "hard: track and speed limit" if cls.FAMILY == "Run" else "hard: the task's rule"
    ]
    spec = [Term(**t) for t in preset["terms"]]
    planned = [
        Term(t.name, t.expression, "hard", limit=t.limit - INSIDE.get(t.expression, 0.0))
        for t in spec
    ]
    return planned, spec


def figure(summary: dict, name: str) -> dict:
    return summary.get(name) or {"value": None, "low": None, "high": None}


def run_task(key: str, args, tmp: Path, device) -> dict:
    cls = scenes.scene_class(key)
    episodes = max(args.episodes_scale * EPISODES.get(key, 200) // 100, 2)
    steps = episodes * cls.MAX_EPISODE_STEPS
    t0 = time.time()
    data = collect(
        CollectConfig(
            scene=key, out=str(tmp / key), episodes=episodes, pixels=False, progress=False
        )
    )
    trainer = Trainer(
        TrainConfig(
            data=str(data),
            out=str(tmp / f"{key}-run"),
            steps=args.train_steps,
            eval_every=10**9,
            progress=False,
        ),
        device=device,
    )
    trainer.run()
    checkpoint = tmp / f"{key}-run" / "checkpoint"
    planned, spec = rule_terms(cls)
    costs = CostSet(task="reward", terms=planned)
    noise = SEARCHES[args.search]
    agent_cfg = AgentConfig(search=replace(CEM_300, **noise))  # N = 300, as measured
    oracle_search = replace(ORACLE, **noise)
    rounds = []
    if args.rounds:  # the agent acts in reality under the rule; its episodes join the data
        refined = refine(
            key,
            data,
            checkpoint,
            costs,
            tmp / f"{key}-refined",
            args.rounds,
            args.round_episodes,
            args.train_steps,
            search=replace(CEM_300, samples=150, iterations=2, elites=15, **noise),
            device=device,
        )
        checkpoint, steps, rounds = refined.checkpoint, refined.env_steps, refined.rounds
    made_s = time.time() - t0
    result = evaluate(
        key,
        checkpoint,
        costs,
        agent_cfg,
        args.episodes,
        seed=args.seed,
        device=device,
        guardrails=spec,
    )
    s = result.summary()
    if args.oracle_episodes:  # the same first episodes (seeds from (seed, i))
        oracle = evaluate(
            key,
            None,
            costs,
            AgentConfig(search=CEM_300),
            args.oracle_episodes,
            seed=args.seed,
            oracle=True,
            device=device,
            oracle_search=oracle_search,
            guardrails=spec,
        )
        s.update({k: v for k, v in oracle.summary().items() if k.startswith("oracle/")})
    row = {
        "task": cls.TASK_ID,
        "lab_return": figure(s, "episode_return"),
        "lab_cost": figure(s, "episode_cost"),
        "lab_env_steps": steps,
        "oracle_return": figure(s, "oracle/episode_return") if args.oracle_episodes else None,
        "oracle_cost": figure(s, "oracle/episode_cost") if args.oracle_episodes else None,
        "oracle_episodes": args.oracle_episodes,
        "published": PUBLISHED.get(key),
        "episodes": args.episodes,
        "train_steps": args.train_steps,
        "rule": [f"{t.expression} <= {t.limit:g}" for t in spec],
        "planned_rule": [f"{t.expression} <= {t.limit:g}" for t in planned],
        "search": args.search,
        "plan_ms": round(result.plan_ms(), 1),
        "refine_rounds": rounds,
        "model_seconds": round(made_s, 1),
    }
    return row


def settings(args) -> dict:
    """What a row's figures depend on besides its task (``--resume`` matches on it)."""
    keys = ("search", "episodes", "train_steps", "rounds", "round_episodes")
    keys += ("oracle_episodes", "episodes_scale", "seed")
    return {k: getattr(args, k) for k in keys}


def resumable(args) -> dict:
    """Rows of a stopped run (``safety_gym-partial.json``) made with these settings, by
    task key: ``--resume`` keeps them and measures the rest."""
    try:
        rows = read("safety_gym-partial")["figures"]
    except LabError:
        return {}
    want = settings(args)
    return {scenes.scene_key(r["task"]): r for r in rows if r.get("settings") == want}


def merged(args, rows: list[dict]) -> list[dict]:
    """``rows``; resuming, beside the rows of other tasks measured alike, read again now
    (two runs of different tasks, ``--resume --tasks ...``, each add theirs)."""
    if not args.resume:
        return rows
    kept = resumable(args)
    kept.update({scenes.scene_key(r["task"]): r for r in rows})
    order = {key: i for i, key in enumerate(PUBLISHED)}
    return sorted(kept.values(), key=lambda r: order.get(scenes.scene_key(r["task"]), 99))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="a few minutes: less of everything")
    ap.add_argument("--tasks", nargs="+", default=list(PUBLISHED), help="task names or ids")
    ap.add_argument("--episodes", type=int, default=5, help="seeded evaluation episodes")
    ap.add_argument("--train-steps", type=int, default=3000, help="world-model training steps")
    ap.add_argument(
        "--episodes-scale", type=int, default=100, help="exploration episodes, in % of EPISODES"
    )
    ap.add_argument(
        "--oracle-episodes", type=int, default=2, help="episodes the oracle plans (0: none)"
    )
    ap.add_argument("--seed", type=int, default=0, help="evaluation seeds come from (seed, i)")
    ap.add_argument(
        "--rounds", type=int, default=3, help="rounds of the agent acting, added to the data"
    )
    ap.add_argument("--round-episodes", type=int, default=25, help="agent episodes a round")
    ap.add_argument(
        "--search", choices=list(SEARCHES), default="icem", help="the search's noise (SEARCHES)"
    )
    ap.add_argument(
        "--resume", action="store_true", help="keep the rows a stopped run measured alike"
    )
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    if args.quick:
        args.episodes, args.train_steps, args.episodes_scale = 2, 600, 25
        args.oracle_episodes, args.rounds, args.round_episodes = 1, 1, 2
    device = choose_device(args.device)
    done = resumable(args) if args.resume else {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tasks:
            key = scenes.scene_key(name)
            if key in done:
                rows.append(done[key])
                print(f"{done[key]['task']}: kept from the stopped run", flush=True)
                continue
            row = run_task(key, args, Path(tmp), device)
            row["settings"] = settings(args)
            rows.append(row)
            # each task's row kept as it comes (a long run stopped keeps what it measured);
            # resuming, beside the other rows measured alike, read again now: two runs
            # of different tasks (--resume --tasks ...) each add theirs
            write("safety_gym-partial", merged(args, rows), command("safety_gym"), str(device))
            ret, cost = row["lab_return"], row["lab_cost"]
            print(
                f"{row['task']}: return {ret['value']} [{ret['low']}, {ret['high']}], "
                f"cost {cost['value']} [{cost['low']}, {cost['high']}] after "
                f"{row['lab_env_steps']} env steps; oracle {row['oracle_return']}, "
                f"{row['oracle_cost']}; published {row['published']}",
                flush=True,
            )
    rows = merged(args, rows)
    save("safety_gym", rows, ap, args, device, ignore=("device", "resume"))
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
