"""Search that needs fewer samples: the smallest N that keeps the agent's success.

    ./lab bench search_efficiency [--quick] [--scenes reach,wall,kitchen] [--episodes 20]
                                  [--no-peer]

Per scene, the shipped state model plans over the same seeded episodes:

* ``reach``: the goal term alone (``pretrained/reach-state``);
* ``wall``: with the learned high level (``pretrained/high-wall``: its subgoal policy
  proposes where to be 8 steps on, the planner plans 8 steps to it; ``./lab bench
  hierarchy``'s ``learned`` design);
* ``kitchen``: the knife rule held as a hard term (``scenes.kitchen.KNIFE_RULE``, the
  person by the board: reset option ``person_near``), judged in reality after every
  step (``violation_step_rate``).

First the baseline: plain CEM at N = 1000 (H = 16, 3 iterations, elites a tenth of
N). Then, for each planner setting (``SETTINGS``: plain CEM, coloured noise, elites
kept, the three of iCEM together, and iCEM with the policy's proposal as a sample where
a policy ships), N goes down the ladder ``LADDER`` until success over the episodes
falls under 0.95 x the baseline's, or its steps to the goal rise over the baseline's /
0.95 (every scene here succeeds 20 of 20 down to N = 8: success alone does not tell a
good plan from one that wanders to the goal): the last N that held is the setting's
``smallest_n``, with its success, steps, plan time per step and violation rate. Every
setting keeps the same rule for the elites (a tenth of N, at least 4), so N alone
changes.

Plan times in episodes run one setting after another, and a noisy machine's speed
drifts between them: the figures that compare speed come from an interleaved pass per
scene (each setting at its smallest N and plain CEM at N = 300, the lab's default search
before this benchmark, take turns deciding from the same real state;
``plan_ms_interleaved``, ``default_ms_interleaved``, ``speedup``). Then the repair
overhead on Kitchen's model: a plan with the knife rule (repair on) against the same
plan with no hard term, and with the rule but no repair, interleaved, at the default
search and at plain CEM's N = 300.

The peer (``PeerMPPI``; ``--no-peer`` leaves it out): pytorch_mppi 0.9.1
(``benchmarks/requirements-peer.txt``, not a dependency of the lab) drives the same
Reach model and task cost over the same seeded episodes, through the lab's episode
runner: its temperature is picked on the first 5 episodes at N = 300, then its own
ladder (``PEER_LADDER``) against the same baseline, then one decision at its smallest N
against iCEM at its own, interleaved (``icem_speedup``: how many times faster iCEM
reaches a plan of the same success).

The imagination runs uncompiled (``LAB_COMPILE=0``) so that every batch size is timed
alike (a compile of its own per batch size would time the ladder's sizes unevenly; the
two paths are within 3 % at N = 1000, ``./lab bench plan_speed``). The last line is
JSON: a list of rows, one per scene and setting (``scene``, ``setting``,
``smallest_n``, ``success``, ``baseline_success``, ``plan_ms``, ``default_plan_ms``,
``violation_step_rate``, ``ladder``: every N tried with its figures), one
``pytorch_mppi`` row and two ``repair`` rows. ``--quick`` (a few minutes): 4 episodes,
Reach alone, a short ladder.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("LAB_COMPILE", "0")  # before the lab's modules read it


import scenes
from agents.agent import Agent, AgentConfig
from agents.build import build_agent
from agents.cost import CostSet, Term
from agents.episode import HardTerms, episode_seed, run_episode
from agents.planners import CEM_300, PlannerConfig
from agents.planners.base import Planner, record
from common.device import choose_device
from common.results import save
from experiments.evaluate import evaluate
from experiments.hierarchy import designs
from scenes.kitchen import KNIFE_RULE
from worldmodels.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "pretrained"
BASELINE_N = 1000
LADDER = (300, 200, 100, 50, 30, 20, 12, 8)
HOLD = 0.95  # a setting holds at N while its success >= HOLD x the baseline's
BEFORE = 300  # the lab's default search before this benchmark: plain CEM at N = 300
KNIFE = Term("knife", KNIFE_RULE, kind="hard")
# name -> (PlannerConfig fields, actor): "both" adds the shipped policy's proposal
SETTINGS = {
    "cem": ({}, "planner"),
    "coloured": ({"noise_beta": 2.0}, "planner"),
    "kept": ({"keep": 0.3}, "planner"),
    "icem": ({"noise_beta": 2.0, "keep": 0.3, "decay": 1.25}, "planner"),
    "icem+policy": ({"noise_beta": 2.0, "keep": 0.3, "decay": 1.25}, "both"),
}


def scene_setup(scene: str) -> dict:
    """What ``evaluate`` needs for ``scene`` beside the agent's search."""
    setup = {
        "checkpoint": PRETRAINED / f"{scene}-state",
        "costs": CostSet(),
        "hierarchy": None,
        "high": None,
        "options": None,
        "guardrails": None,
        "policy": PRETRAINED / f"policy-{scene}",
    }
    if scene == "wall":
        costs, hierarchy = designs("wall")["learned"]
        setup.update(costs=costs, hierarchy=hierarchy, high=PRETRAINED / "high-wall")
    if scene == "kitchen":
        setup.update(
            costs=CostSet(terms=[KNIFE]), options={"person_near": True}, guardrails=[KNIFE]
        )
    return setup


def search_at(n: int, fields: dict) -> PlannerConfig:
    """Plain CEM at N = ``n`` with ``fields`` changed (elites a tenth of N, at least 4)."""
    return replace(CEM_300, samples=n, elites=0, **fields)


def run(scene: str, n: int, setting: str, episodes: int, seed: int, device) -> dict:
    """Success, violation rate and plan time per step of ``setting`` at N = ``n``."""
    fields, actor = SETTINGS[setting]
    setup = scene_setup(scene)
    cfg = AgentConfig(
        search=search_at(n, fields), decode=False, actor=actor, hierarchy=setup["hierarchy"]
    )
    t0 = time.perf_counter()
    result = evaluate(
        scene,
        setup["checkpoint"],
        setup["costs"],
        cfg,
        episodes,
        seed=seed,
        device=device,
        high=setup["high"],
        options=setup["options"],
        guardrails=setup["guardrails"],
        policy=setup["policy"] if actor == "both" else None,
    )
    s = result.summary()
    violation = s.get("violation_step_rate", {}).get("value")
    steps = s.get("steps_to_goal", {}).get("value")
    row = {
        "n": n,
        "success": round(s["success_rate"]["value"], 3),
        "steps_to_goal": None if steps is None else round(steps, 1),
        "plan_ms": round(result.plan_ms(), 2),
        "violation_step_rate": None if violation is None else round(violation, 4),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(
        f"  {scene} {setting} N={n}: success {row['success']:.2f} in {row['steps_to_goal']} "
        f"steps, plan {row['plan_ms']} ms a "
        f"step, violating steps {row['violation_step_rate']}, {row['seconds']} s",
        flush=True,
    )
    return row


def holds(row: dict, baseline: dict) -> bool:
    """``row`` keeps the baseline's success (HOLD x it) and its speed to the goal (steps
    at most 1 / HOLD x its): every scene here succeeds 20 of 20 down to N = 8, so success
    alone does not tell a good plan from one that wanders to the goal."""
    if row["success"] < HOLD * baseline["success"]:
        return False
    steps, base = row["steps_to_goal"], baseline["steps_to_goal"]
    return steps is None or base is None or steps <= base / HOLD


def smallest(scene, setting, baseline: dict, ladder, episodes, seed, device) -> dict:
    """Down the ladder until a point no longer ``holds`` against ``baseline``."""
    tried, held = [], None
    for n in ladder:
        row = run(scene, n, setting, episodes, seed, device)
        tried.append(row)
        if not holds(row, baseline):
            break
        held = row
    return {"held": held, "ladder": tried}


@functools.cache
def shared_model(checkpoint: str, device: str):
    """One loaded model per checkpoint: the timed agents of a scene plan with the same one."""
    return load_checkpoint(checkpoint, device=device)[0]


def agent_for(scene: str, search: PlannerConfig, actor: str, device, costs=None) -> Agent:
    """An agent of ``scene``'s setup with ``search``, reset on its first seeded episode."""
    setup = scene_setup(scene)
    model = shared_model(str(setup["checkpoint"]), str(device))
    cfg = AgentConfig(search=search, decode=False, actor=actor, hierarchy=setup["hierarchy"])
    agent = build_agent(
        model,
        scenes.scene_class(scene)(pixels=False),
        setup["costs"] if costs is None else costs,
        cfg,
        checkpoint=setup["checkpoint"],
        policy=setup["policy"] if actor == "both" else None,
        high=setup["high"],
    )
    agent.reset(seed=0, options=setup["options"])
    return agent


def interleaved(agents: dict[str, Agent], repeats: int) -> dict[str, float]:
    """Median ms of one decision (``Agent.think``: the search and, with two levels, the
    high level) of each agent, the agents taking turns within every round: a noisy
    machine's speed drifts between rounds, not within one (``./lab bench plan_speed``)."""
    times = {name: [] for name in agents}
    for r in range(repeats + 2):  # two rounds of warm-up
        for name, agent in agents.items():
            t0 = time.perf_counter()
            agent.think()
            if r >= 2:
                times[name].append(time.perf_counter() - t0)
    return {name: round(statistics.median(t) * 1e3, 2) for name, t in times.items()}


def timing(scene: str, rows: list[dict], device, repeats: int) -> None:
    """Each row's plan time at its smallest N against plain CEM at today's default N,
    interleaved (``plan_ms_interleaved``, ``default_ms_interleaved``, ``speedup``)."""
    agents = {"default": agent_for(scene, search_at(BEFORE, {}), "planner", device)}
    for row in rows:
        if row["smallest_n"] is not None:
            fields, actor = SETTINGS[row["setting"]]
            agents[row["setting"]] = agent_for(
                scene, search_at(row["smallest_n"], fields), actor, device
            )
    ms = interleaved(agents, repeats)
    for row in rows:
        if row["setting"] in ms:
            row["plan_ms_interleaved"] = ms[row["setting"]]
            row["default_ms_interleaved"] = ms["default"]
            row["speedup"] = round(ms["default"] / ms[row["setting"]], 2)


def repair_overhead(device, repeats: int, search: PlannerConfig, name: str) -> dict:
    """Plan time with the knife rule (repair on) over the same plan with no hard term and
    over the rule without repair, interleaved, on Kitchen's model from one real state (the
    person by the board), with ``search``."""
    agents = {
        "repair": agent_for("kitchen", search, "planner", device),
        "no_repair": agent_for("kitchen", replace(search, repair=0), "planner", device),
        "no_hard_term": agent_for("kitchen", search, "planner", device, costs=CostSet()),
    }
    ms = interleaved(agents, repeats)
    return {
        "scene": "kitchen",
        "setting": f"repair, {name}",
        "samples": search.samples,
        "plan_ms_repair": ms["repair"],
        "plan_ms_rule_without_repair": ms["no_repair"],
        "plan_ms_no_hard_term": ms["no_hard_term"],
        "repair_overhead": round(ms["repair"] / ms["no_hard_term"] - 1, 3),
        "repair_overhead_over_the_rule": round(ms["repair"] / ms["no_repair"] - 1, 3),
    }


# --- the peer: pytorch_mppi driving the same model and cost --------------------------

PEER_LADDER = (1000, 300, 100, 30)
PEER_LAMBDA = (1.0, 0.1, 0.01)  # its temperature, tried at N = 300 on the first episodes


class PeerMPPI(Planner):
    """pytorch_mppi's MPPI (Williams et al.; UM-ARM-Lab, 0.9.1) as a lab planner: its
    dynamics are the model's predictor, one step a call, its running cost the lab's task
    term (the distance of the probed x, y to the goal, summed over the horizon, as
    ``agents.cost`` sums it); ``iterations`` of its updates a plan (the first shifts its
    nominal sequence a step, as an agent's warm start is shifted). A new episode (no warm
    start) resets it. The record holds the one sequence it returns, imagined once."""

    name = "pytorch_mppi"

    def __init__(self, cfg: PlannerConfig, action_dim: int, model, lambda_: float) -> None:
        import pytorch_mppi  # benchmarks/requirements-peer.txt

        super().__init__(cfg, action_dim)
        self.goal: torch.Tensor | None = None
        names = ["x", "y"]
        D = model.cfg.latent_dim

        def dynamics(s, a):
            return model.predictor(s, a)

        def running_cost(s, a):
            xy = model.probes(s, [model.cfg.signals.index(n) for n in names])
            return torch.linalg.vector_norm(xy - self.goal, dim=-1)

        self.peer = pytorch_mppi.MPPI(
            dynamics,
            running_cost,
            D,
            noise_sigma=cfg.init_std**2 * torch.eye(action_dim),
            num_samples=cfg.samples,
            horizon=cfg.horizon,
            lambda_=lambda_,
            u_min=-torch.ones(action_dim),
            u_max=torch.ones(action_dim),
        )

    @torch.inference_mode()
    def plan(self, model, cost, s0, goal, goal_latent, generator, warm=None, show=(), **_):
        t0 = time.perf_counter()
        if warm is None:
            self.peer.reset()
        self.goal = goal.to(s0.dtype)
        state = s0.reshape(-1)
        for i in range(self.cfg.iterations):
            self.peer.command(state, shift_nominal_trajectory=i == 0)
        actions = self.peer.get_action_sequence().clamp(-1.0, 1.0)[None]  # (1, H, A)
        latents, signals, result = self.evaluate(
            model, cost, s0.reshape(1, -1), actions, goal, goal_latent, show
        )
        elites = torch.zeros(1, dtype=torch.long)
        return record(
            actions, latents, signals, result, elites, self.cfg.iterations, time.perf_counter() - t0
        )


def peer_agent(n: int, lambda_: float, device) -> Agent:
    agent = agent_for("reach", search_at(n, {}), "planner", device)
    agent.planner = PeerMPPI(agent.cfg.search, 2, agent.model, lambda_)
    return agent


def episodes_of(agent: Agent, episodes: int, seed: int) -> dict:
    """Success and steps to the goal of ``agent`` over the benchmark's seeded episodes
    (``agents.episode``'s runner, as ``evaluate`` runs them)."""
    hard = HardTerms([], [s.name for s in agent.scene.SIGNALS], list(agent.scene.TASK_SIGNALS))
    recs = [run_episode(agent, hard, episode_seed(seed, i), {}) for i in range(episodes)]
    wins = [r for r in recs if r["success"]]
    return {
        "success": round(len(wins) / len(recs), 3),
        "steps_to_goal": round(statistics.mean(r["steps"] for r in wins), 1) if wins else None,
    }


def peer(base: dict, ours: dict | None, episodes: int, seed: int, device, repeats: int) -> dict:
    """pytorch_mppi on Reach: its temperature (``PEER_LAMBDA``) chosen on the first
    episodes at N = 300, then its ladder (``PEER_LADDER``) against the same baseline as
    ours, then its plan at its smallest N against iCEM at its own, interleaved."""
    trial = {
        lam: episodes_of(peer_agent(300, lam, device), min(episodes, 5), seed)
        for lam in PEER_LAMBDA
    }
    lam = max(PEER_LAMBDA, key=lambda k: (trial[k]["success"], -(trial[k]["steps_to_goal"] or 1e9)))
    tried, held = [], None
    for n in PEER_LADDER:
        row = {"n": n, **episodes_of(peer_agent(n, lam, device), episodes, seed)}
        tried.append(row)
        print(
            f"  reach pytorch_mppi N={n}: success {row['success']:.2f} in "
            f"{row['steps_to_goal']} steps",
            flush=True,
        )
        if not holds(row, base):
            break
        held = row
    out = {
        "scene": "reach",
        "setting": "pytorch_mppi",
        "lambda": lam,
        "lambda_trial": {str(k): v for k, v in trial.items()},
        "smallest_n": held and held["n"],
        "success": held and held["success"],
        "steps_to_goal": held and held["steps_to_goal"],
        "baseline_success": base["success"],
        "episodes": episodes,
        "ladder": tried,
    }
    if held and ours and ours.get("smallest_n"):
        fields, _ = SETTINGS["icem"]
        ms = interleaved(
            {
                "peer": peer_agent(held["n"], lam, device),
                "icem": agent_for(
                    "reach", search_at(ours["smallest_n"], fields), "planner", device
                ),
            },
            repeats,
        )
        out.update(
            plan_ms_interleaved=ms["peer"],
            icem_ms_interleaved=ms["icem"],
            icem_n=ours["smallest_n"],
            icem_speedup=round(ms["peer"] / ms["icem"], 2),
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="a few minutes: less of everything")
    ap.add_argument("--scenes", default="reach,wall,kitchen")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--episodes", type=int, default=20, help="seeded episodes per point")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--no-peer",
        action="store_true",
        help="leave out pytorch_mppi on Reach (pip install -r benchmarks/requirements-peer.txt)",
    )
    args = ap.parse_args()
    if not args.no_peer and importlib.util.find_spec("pytorch_mppi") is None:
        print(
            "The peer, pytorch_mppi, is not installed: .venv/bin/pip install -r "
            "benchmarks/requirements-peer.txt (or leave it out: --no-peer)",
            file=sys.stderr,
        )
        return 2
    device = choose_device(args.device)
    episodes, ladder, scene_names = args.episodes, LADDER, args.scenes.split(",")
    if args.quick:
        episodes, ladder, scene_names = 4, (300, 100, 30), ["reach"]
    settings = [s for s in args.settings.split(",") if s]
    rows = []
    for scene in scene_names:
        first = len(rows)
        print(f"{scene}: baseline, plain CEM at N={BASELINE_N}", flush=True)
        base = run(scene, BASELINE_N, "cem", episodes, args.seed, device)
        default = run(scene, BEFORE, "cem", episodes, args.seed, device)
        for setting in settings:
            if SETTINGS[setting][1] == "both" and not (PRETRAINED / f"policy-{scene}").exists():
                continue
            if SETTINGS[setting][1] == "both" and scene == "wall":
                continue  # two levels: the high level's policy already proposes
            found = smallest(scene, setting, base, ladder, episodes, args.seed, device)
            held = found["held"] or {}
            row = {
                "scene": scene,
                "setting": setting,
                "smallest_n": held.get("n"),
                "success": held.get("success"),
                "baseline_success": base["success"],
                "steps_to_goal": held.get("steps_to_goal"),
                "baseline_steps_to_goal": base["steps_to_goal"],
                "baseline_plan_ms": base["plan_ms"],
                "plan_ms": held.get("plan_ms"),
                "default_plan_ms": default["plan_ms"],
                "violation_step_rate": held.get("violation_step_rate"),
                "episodes": episodes,
                "ladder": found["ladder"],
            }
            rows.append(row)
            print(
                f"{scene} {setting}: smallest N {row['smallest_n']} (success {row['success']} "
                f"vs {base['success']} at N={BASELINE_N}), plan {row['plan_ms']} ms a step "
                f"against {default['plan_ms']} ms with plain CEM at N={BEFORE}",
                flush=True,
            )
        timing(scene, rows[first:], device, 5 if args.quick else 30)
        if not args.no_peer and scene == "reach":
            icem = next((r for r in rows[first:] if r["setting"] == "icem"), None)
            found = peer(base, icem, episodes, args.seed, device, 5 if args.quick else 30)
            rows.append(found)
            print(
                f"reach pytorch_mppi: smallest N {found['smallest_n']} (lambda "
                f"{found['lambda']}); a decision {found.get('plan_ms_interleaved')} ms "
                f"against iCEM's {found.get('icem_ms_interleaved')} ms at N="
                f"{found.get('icem_n')}: {found.get('icem_speedup')}x (interleaved)",
                flush=True,
            )
        for row in rows[first:]:
            if "speedup" in row:
                print(
                    f"{scene} {row['setting']} at N={row['smallest_n']}: "
                    f"{row['plan_ms_interleaved']} ms a decision against "
                    f"{row['default_ms_interleaved']} ms with plain CEM at N={BEFORE} "
                    f"(interleaved): {row['speedup']}x",
                    flush=True,
                )
    for name, search in (
        ("the default search", PlannerConfig()),
        (f"plain CEM at N={BEFORE}", search_at(BEFORE, {})),
    ):
        repair = repair_overhead(device, 5 if args.quick else 30, search, name)
        rows.append(repair)
        print(
            f"repair, {name}: {repair['plan_ms_repair']} ms a plan with the knife rule and "
            f"repair, {repair['plan_ms_rule_without_repair']} ms without repair, "
            f"{repair['plan_ms_no_hard_term']} ms with no hard term: overhead "
            f"{repair['repair_overhead']:.0%} ({repair['repair_overhead_over_the_rule']:.0%} "
            "over the rule alone)",
            flush=True,
        )
    print(json.dumps(rows))
    save("search_efficiency", rows, ap, args, device=device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
